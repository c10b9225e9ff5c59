// The PocketBase JavaScript SDK (npm `pocketbase`, unchanged) against a running Strata,
// the way a PocketBase application's admin script uses it. Run by
// tests/tests/it/pocketbase.rs, which prepares the server, the users and the source, and
// checks the bytes afterwards. Environment:
//   STRATA_URL                      the API's base URL
//   PB_EMAIL / PB_PASSWORD          an admin user
//   PB_VIEWER_EMAIL / PB_VIEWER_PASSWORD   a viewer user
//   PB_SOURCE_DIR                   the source's directory (this script changes it before restoring)
//   PB_DOWNLOAD                     where to save the downloaded zip
// Prints one line per step; exits non-zero at the first surprise.

"use strict";
const fs = require("node:fs");
const path = require("node:path");
const PocketBase = require("pocketbase/cjs");

const env = (name) => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set`);
    return v;
};
const base = env("STRATA_URL");
const sourceDir = env("PB_SOURCE_DIR");

function check(cond, what) {
    if (!cond) throw new Error(`check failed: ${what}`);
    console.log(`ok: ${what}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs = 60000) {
    const start = Date.now();
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
        await sleep(200);
    }
}

// Expects `fn` to throw the SDK's own error object; returns it.
async function sdkError(what, fn) {
    try {
        await fn();
    } catch (e) {
        // The CommonJS build exports the client only; the SDK names its error class.
        check(e && String(e.name).startsWith("ClientResponseError") && typeof e.status === "number",
            `${what}: a ClientResponseError (${e})`);
        return e;
    }
    throw new Error(`${what}: expected an error, got success`);
}

async function main() {
    const pb = new PocketBase(base);
    // The SDK cancels duplicate pending requests by default; this script awaits each one.
    pb.autoCancellation(false);
    const superusers = pb.collection("_superusers");

    // Logins: a wrong password and a viewer are refused in PocketBase's way.
    let e = await sdkError("wrong password", () =>
        superusers.authWithPassword(env("PB_EMAIL"), "not the password at all"),
    );
    check(e.status === 400 && e.response.message === "Failed to authenticate.", `wrong password: 400 (${JSON.stringify(e.response)})`);
    e = await sdkError("viewer as superuser", () =>
        superusers.authWithPassword(env("PB_VIEWER_EMAIL"), env("PB_VIEWER_PASSWORD")),
    );
    check(e.status === 403, `a viewer is not a superuser: ${e.status}`);
    check(!pb.authStore.isValid, "no token is stored after refused logins");

    const auth = await superusers.authWithPassword(env("PB_EMAIL"), env("PB_PASSWORD"));
    check(auth.record.email === env("PB_EMAIL"), "the superuser record names the user");
    check(pb.authStore.isValid, "authStore.isValid (the token's exp is read by the SDK)");
    check(pb.authStore.isSuperuser, "authStore.isSuperuser");

    const health = await pb.health.check();
    check(health.code === 200 && health.data.canBackup === true, `health.check().data.canBackup (${JSON.stringify(health)})`);

    // Invalid names, in the SDK's error object.
    e = await sdkError("an invalid name", () => pb.backups.create("Not Valid!.zip"));
    check(e.status === 400 && e.response.data.name && e.response.data.name.code === "validation_invalid_name",
        `invalid name: 400 with data.name (${JSON.stringify(e.response)})`);

    // A backup, and a second one while it runs.
    check((await pb.backups.create("nightly.zip")) === true, "backups.create('nightly.zip')");
    e = await sdkError("a second backup while one runs", () => pb.backups.create("second.zip"));
    check(e.status === 400 && /another backup\/restore/.test(e.response.message),
        `second backup: 400 (${JSON.stringify(e.response)})`);
    const busy = await pb.health.check();
    check(busy.data.canBackup === false, "canBackup is false while the backup runs");

    const listed = await until("nightly.zip in getFullList", async () => {
        const list = await pb.backups.getFullList();
        return list.find((b) => b.key === "nightly.zip");
    });
    check(listed.size > 0, `the listed backup has a size (${listed.size})`);
    check(!Number.isNaN(Date.parse(listed.modified)), `modified is a date (${listed.modified})`);
    await until("canBackup again", async () => (await pb.health.check()).data.canBackup === true);

    e = await sdkError("a taken name", () => pb.backups.create("nightly.zip"));
    check(e.status === 400 && e.response.data.name && e.response.data.name.code === "validation_backup_name_exists",
        `taken name: 400 (${JSON.stringify(e.response)})`);

    // Download with a file token, as PocketBase's admin UI does.
    const token = await pb.files.getToken();
    const url = pb.backups.getDownloadURL(token, "nightly.zip");
    const res = await fetch(url); // no Authorization header: the token is the credential
    check(res.status === 200, `download: ${res.status}`);
    check(res.headers.get("content-type") === "application/zip", `content-type ${res.headers.get("content-type")}`);
    const zip = Buffer.from(await res.arrayBuffer());
    fs.writeFileSync(env("PB_DOWNLOAD"), zip);
    check(zip.length > 0 && zip.subarray(0, 2).toString() === "PK", `a zip of ${zip.length} bytes`);
    const noToken = await fetch(pb.buildURL("/api/backups/nightly.zip"));
    check(noToken.status === 401, `a download without a token or header is refused: ${noToken.status}`);

    // Upload the zip back under another name.
    const form = new FormData();
    form.append("file", new Blob([zip], { type: "application/zip" }), "uploaded.zip");
    check((await pb.backups.upload(form)) === true, "backups.upload(uploaded.zip)");
    await until("uploaded.zip in getFullList", async () =>
        (await pb.backups.getFullList()).some((b) => b.key === "uploaded.zip"),
    );
    await until("canBackup after the upload", async () => (await pb.health.check()).data.canBackup === true);

    // Change the source, then restore the backup over it.
    fs.writeFileSync(path.join(sourceDir, "added-after-backup.txt"), "should disappear");
    for (const name of fs.readdirSync(sourceDir)) {
        const p = path.join(sourceDir, name);
        if (fs.statSync(p).isFile() && name !== "added-after-backup.txt") {
            fs.writeFileSync(p, "overwritten after the backup");
            break;
        }
    }
    check((await pb.backups.restore("nightly.zip")) === true, "backups.restore('nightly.zip')");
    e = await sdkError("a backup while the restore runs", () => pb.backups.create("during-restore.zip"));
    check(e.status === 400, `a backup during the restore: ${e.status}`);
    await until("the restore to end", async () => (await pb.health.check()).data.canBackup === true);

    // Delete the uploaded one.
    check((await pb.backups.delete("uploaded.zip")) === true, "backups.delete('uploaded.zip')");
    await until("uploaded.zip gone", async () =>
        !(await pb.backups.getFullList()).some((b) => b.key === "uploaded.zip"),
    );
    e = await sdkError("deleting a missing key", () => pb.backups.delete("no-such-backup.zip"));
    check(e.status === 404, `a missing key: 404 (${JSON.stringify(e.response)})`);

    // Logging out is the SDK's own affair; the server-side session still works until then.
    pb.authStore.clear();
    e = await sdkError("listing after logout", () => pb.backups.getFullList());
    check(e.status === 401, `no token: 401 (${JSON.stringify(e.response)})`);
    console.log("ALL OK");
}

main().catch((err) => {
    console.error(err && err.stack ? err.stack : err);
    process.exit(1);
});
