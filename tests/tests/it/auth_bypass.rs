//! No spelling of a path reaches a handler without the check its route demands: every
//! route of the route table, spelled every way a lenient router might still take it
//! (escaped letters in upper- and lower-case hex, doubled and escaped slashes, `.` and
//! `..` segments, a trailing slash, odd case, `%2F` inside ids), sent byte for byte
//! without credentials and with a viewer key. Nothing may answer 2xx to a caller the
//! route does not allow, nothing may change, and every request that reaches a handler is
//! in the audit log under the route it reached.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sqlx::Row;
use strata_api::routes::{Access, RouteSpec, ROUTES};
use strata_auth::Role;
use strata_tests::raw_http::{self, RawResponse};
use strata_tests::{Options, TestApp};

/// `%XX` of one ASCII character, upper- or lower-case hex.
fn escape(c: char, upper: bool) -> String {
    if upper {
        format!("%{:02X}", c as u32)
    } else {
        format!("%{:02x}", c as u32)
    }
}

/// Spellings of `path` (already concrete) other than `path` itself.
fn spellings(path: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // Each character escaped in turn, both hex cases.
    for (i, c) in path.char_indices().filter(|(_, c)| *c != '/') {
        for upper in [true, false] {
            out.insert(format!(
                "{}{}{}",
                &path[..i],
                escape(c, upper),
                &path[i + c.len_utf8()..]
            ));
        }
    }
    // Every character escaped at once.
    out.insert(
        path.chars()
            .map(|c| {
                if c == '/' {
                    "/".to_string()
                } else {
                    escape(c, true)
                }
            })
            .collect(),
    );
    // At every slash: doubled, escaped, a `.` or a `x/..` segment (plain and escaped).
    for (i, _) in path.char_indices().filter(|(_, c)| *c == '/') {
        let (head, tail) = (&path[..i], &path[i..]);
        out.insert(format!("{head}/{tail}"));
        out.insert(format!("{head}%2F{}", &tail[1..]));
        out.insert(format!("{head}%2f{}", &tail[1..]));
        out.insert(format!("{head}/.{tail}"));
        out.insert(format!("{head}/%2e{tail}"));
        out.insert(format!("{head}/x/..{tail}"));
        out.insert(format!("{head}/x/%2E%2E{tail}"));
        out.insert(format!("{head}/x/%2e%2e{tail}"));
    }
    // A trailing slash or dot segment, and odd case, segment by segment and whole.
    out.insert(format!("{path}/"));
    out.insert(format!("{path}/."));
    out.insert(format!("{path}/x/.."));
    out.insert(path.to_uppercase());
    let segments: Vec<&str> = path.split('/').collect();
    for i in 1..segments.len() {
        let mut s = segments.clone();
        let upper = s[i].to_uppercase();
        let mut capital = s[i].to_string();
        if let Some(first) = capital.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        s[i] = &upper;
        out.insert(s.join("/"));
        s[i] = &capital;
        out.insert(s.join("/"));
    }
    out.remove(path);
    out
}

/// The ids the app holds, to put in routes' parameters.
struct Ids {
    backup: String,
    job: String,
    schedule: String,
    key: String,
    source: String,
    user: String,
}

fn concrete(path: &str, ids: &Ids, wrap: &dyn Fn(&str) -> String) -> String {
    path.replace("{backup_id}", &wrap(&ids.backup))
        .replace("{job_id}", &wrap(&ids.job))
        .replace("{schedule_id}", &wrap(&ids.schedule))
        .replace("{user_id}", &wrap(&ids.user))
        .replace("{key}", &wrap(&format!("{}.zip", ids.backup)))
        .replace(
            "{id}",
            &wrap(if path.contains("/keys/") {
                &ids.key
            } else {
                &ids.source
            }),
        )
}

/// A body that would do something if the route ran it.
fn body_for(route: &RouteSpec, restore_target: &str) -> Option<String> {
    let body = match (route.method, route.path) {
        (_, "/api/v1/keys") => json!({"name": "intruder", "role": "admin"}),
        (_, "/api/v1/users") => {
            json!({"email": "intruder@example.com", "password": "intruder password", "role": "admin"})
        }
        ("POST", "/api/v1/auth/password") => {
            json!({"current_password": "whatever it is", "new_password": "intruder password"})
        }
        ("POST", "/api/backups") => json!({"name": "intruder.zip"}),
        (_, "/api/v1/sources") => json!({"name": "intruder", "files": {"path": "/tmp"}}),
        (_, "/api/v1/backup/create") | ("POST", "/api/v1/backup") => json!({"source": "app"}),
        (_, "/api/v1/backup/prune") => json!({"source": "app", "keep_last": 1}),
        ("POST", "/api/v1/backup/schedule") => json!({"source": "app", "cron": "0 3 * * *"}),
        ("PUT", _) => json!({"enabled": false}),
        (_, p) if p.ends_with("/restore") || p.starts_with("/api/v1/backup/restore/") => {
            json!({"target": restore_target})
        }
        ("POST", _) => json!({}),
        _ => return None,
    };
    Some(body.to_string())
}

/// What the catalog holds, minus what reading it legitimately changes (a key's last
/// use, the audit log itself).
async fn catalog(app: &TestApp) -> Vec<String> {
    let mut db = app.db().await;
    let mut out = Vec::new();
    for q in [
        "SELECT id || name || role || coalesce(revoked_at::text, '') FROM api_keys",
        "SELECT id::text || name || spec::text FROM sources",
        "SELECT id || email || role || password_hash FROM users",
        "SELECT id || coalesce(revoked_at::text, '') FROM user_sessions",
        "SELECT id || status || coalesce(parent_id, '') FROM backups",
        "SELECT id::text || kind || status || coalesce(cancel_requested_at::text, '') FROM jobs",
        "SELECT id::text || cron || enabled::text FROM schedules",
        "SELECT count(*)::text FROM outbox",
    ] {
        let mut rows: Vec<String> = sqlx::query(q)
            .fetch_all(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        rows.sort();
        out.push(format!("{q}\n{}", rows.join("\n")));
    }
    out
}

/// One request sent and its answer.
struct Sent {
    route: &'static RouteSpec,
    credential: &'static str,
    target: String,
    res: RawResponse,
}

#[tokio::test]
async fn no_spelling_of_any_path_reaches_a_handler_without_its_check() {
    let app = TestApp::spawn(Options {
        workers: 1,
        env: vec![("STRATA_AUTH_MAX_FAILURES".into(), "1000000".into())],
        ..Default::default()
    })
    .await;
    // Something to steal or destroy: a source with a backup, a schedule, keys.
    let src = app.dir.path().join("app");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.txt"), b"precious").unwrap();
    let source = app.create_source("app", &src).await;
    let accepted = app.backup("app", "full").await;
    let job = accepted["job_id"].as_str().unwrap().to_string();
    app.wait_success(&job).await;
    let (status, schedule) = app
        .post(
            "/api/v1/backup/schedule",
            json!({"source": "app", "cron": "0 0 1 1 *", "enabled": false}),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    let (_, victim) = app
        .post("/api/v1/keys", json!({"name": "victim", "role": "admin"}))
        .await;
    let (_, viewer) = app
        .post("/api/v1/keys", json!({"name": "viewer", "role": "viewer"}))
        .await;
    let viewer_key = viewer["key"].as_str().unwrap().to_string();
    let (status, victim_user) = app
        .post(
            "/api/v1/users",
            json!({"email": "victim@example.com", "password": "victim's password", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{victim_user}");
    let ids = Ids {
        backup: accepted["backup_id"].as_str().unwrap().to_string(),
        job,
        schedule: schedule["id"].as_str().unwrap().to_string(),
        key: victim["id"].as_str().unwrap().to_string(),
        source: source["id"].as_str().unwrap().to_string(),
        user: victim_user["id"].as_str().unwrap().to_string(),
    };
    let restore_target = app.dir.path().join("stolen").display().to_string();
    let before = catalog(&app).await;
    let tree_before = strata_tests::tree::snapshot(&src);

    // Every spelling of every protected route, anonymous and as a viewer.
    let viewer_header = format!("Bearer {viewer_key}");
    let mut plan = Vec::new();
    // Logins and the PocketBase health check need no credential by design; the login
    // routes are probed in `users` and `pocketbase`.
    let protected = |r: &&RouteSpec| matches!(r.access, Access::Role(_) | Access::Download(_));
    for route in ROUTES.iter().filter(protected) {
        let mut targets = spellings(&concrete(route.path, &ids, &|id| id.to_string()));
        if route.path.contains('{') {
            // Ids with escaped slashes and dot segments inside them.
            let wraps: [fn(&str) -> String; 3] = [
                |id| format!("{id}%2F"),
                |id| format!("x%2F..%2F{id}"),
                |id| format!("{id}%2f.."),
            ];
            for wrap in wraps {
                targets.insert(concrete(route.path, &ids, &wrap));
            }
        }
        for target in targets {
            for credential in ["anonymous", "viewer"] {
                plan.push((route, credential, target.clone()));
            }
        }
    }
    let base = app.base.clone();
    let sent: Vec<Sent> = futures::stream::iter(plan)
        .map(|(route, credential, target)| {
            let (base, viewer_header, restore_target) =
                (base.clone(), viewer_header.clone(), restore_target.clone());
            async move {
                let auth = [("Authorization", viewer_header.as_str())];
                let headers: &[(&str, &str)] = if credential == "viewer" { &auth } else { &[] };
                let body = body_for(route, &restore_target);
                let res =
                    raw_http::send(&base, route.method, &target, headers, body.as_deref()).await;
                Sent {
                    route,
                    credential,
                    target,
                    res,
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(sent.len() > 4000, "only {} requests were tried", sent.len());

    // The audit log, by request id.
    let mut db = app.db().await;
    let audited: HashMap<String, (String, String, i32)> =
        sqlx::query("SELECT request_id, method, action, status FROM audit_log")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    (r.get(1), r.get::<String, _>(2), r.get::<i32, _>(3)),
                )
            })
            .collect();
    let allows = |action: &str, role: Role| {
        ROUTES.iter().any(|r| {
            format!("{} {}", r.method, r.path) == action
                && match r.access {
                    Access::Public | Access::Login | Access::Optional => true,
                    Access::Role(need) | Access::Download(need) => role >= need,
                }
        })
    };
    let mut reached = 0;
    for s in &sent {
        let what = format!(
            "{} {} ({}, route {}): {} {}",
            s.route.method, s.target, s.credential, s.route.path, s.res.status, s.res.body
        );
        let Some(id) = s.res.header("x-request-id") else {
            // Refused by the HTTP layer before the application (a request-target that is
            // not a path): nothing ran.
            assert!(
                s.res.status == 400 && !s.target.starts_with('/'),
                "no x-request-id: {what}"
            );
            continue;
        };
        let audit = audited.get(id);
        if s.res.status == 404 && s.res.error_code().as_deref() == Some("route_not_found") {
            // The router matched nothing: no handler ran, nothing to audit.
            assert!(audit.is_none(), "audited without a route: {what}");
            continue;
        }
        reached += 1;
        let (method, action, status) =
            audit.unwrap_or_else(|| panic!("reached a route but was not audited: {what}"));
        assert_eq!(method, s.route.method, "{what}");
        assert_eq!(*status as u16, s.res.status, "{what}");
        assert!(
            ROUTES
                .iter()
                .any(|r| format!("{} {}", r.method, r.path) == *action),
            "audited as {action:?}, not a route: {what}"
        );
        match s.credential {
            "anonymous" => assert_eq!(s.res.status, 401, "{what}"),
            _ => {
                if allows(action, Role::Viewer) {
                    continue;
                }
                assert_eq!(s.res.status, 403, "{what}");
            }
        }
    }
    assert!(reached > 1000, "only {reached} requests reached a route");

    // Nothing changed: no key, source, backup, job, schedule or message was made or
    // altered, and the source's files are as they were.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(catalog(&app).await, before);
    assert_eq!(strata_tests::tree::snapshot(&src), tree_before);
    assert!(!std::path::Path::new(&restore_target).exists());
}

/// The exact requests that worked anonymously before the fix.
#[tokio::test]
async fn the_reported_bypasses_are_refused() {
    let app = TestApp::spawn(Options {
        workers: 0,
        env: vec![
            ("STRATA_AUTH_MAX_FAILURES".into(), "2".into()),
            ("STRATA_AUTH_LOCKOUT_SECS".into(), "600".into()),
        ],
        ..Default::default()
    })
    .await;
    let key_body = r#"{"name":"x","role":"admin"}"#;
    let res = raw_http::send(&app.base, "POST", "/api/v1/%6Beys", &[], Some(key_body)).await;
    assert_eq!(res.status, 401, "{}", res.body);
    for (method, target) in [
        ("GET", "/api/v1/config/expor%74"),
        ("POST", "/api/v1/source%73"),
        ("POST", "/api/v1/b%61ckup/some-backup/restore"),
        ("POST", "/api/v1/repository/g%63"),
        ("DELETE", "/api/v1/%6Beys/0123456789ab"),
    ] {
        let res = raw_http::send(&app.base, method, target, &[], Some("{}")).await;
        assert_eq!(res.status, 401, "{method} {target}: {}", res.body);
    }
    // Locked out by failures, the escaped spelling is refused too (429, not 201).
    for _ in 0..3 {
        raw_http::send(
            &app.base,
            "GET",
            "/api/v1/sources",
            &[("Authorization", "Bearer strata_nope")],
            None,
        )
        .await;
    }
    let res = raw_http::send(&app.base, "POST", "/api/v1/%6Beys", &[], Some(key_body)).await;
    assert_eq!(res.status, 429, "{}", res.body);
    let mut db = app.db().await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(keys, 1, "only the bootstrap key exists");
    // Each refusal is audited under the route the path really names.
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE outcome = 'denied' AND target LIKE '%\\%%' ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "POST /api/v1/keys",
            "GET /api/v1/config/export",
            "POST /api/v1/sources",
            "POST /api/v1/backup/{backup_id}/restore",
            "POST /api/v1/repository/gc",
            "DELETE /api/v1/keys/{id}",
            "POST /api/v1/keys",
        ]
    );
    // The request metrics name the route, not `unmatched`.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"route="/api/v1/config/export",status="401""#),
        "{metrics}"
    );
}

#[test]
fn spellings_cover_each_kind_of_trick() {
    let s = spellings("/api/v1/keys");
    for expected in [
        "/api/v1/%6Beys",
        "/api/v1/%6beys",
        "/api/v1//keys",
        "/api/v1/keys/",
        "/api/v1/./keys",
        "/api/v1/x/../keys",
        "/api/v1/x/%2e%2e/keys",
        "/api/v1%2Fkeys",
        "/API/V1/KEYS",
        "/api/v1/KEYS",
        "/api/v1/Keys",
        "/%61%70%69/%76%31/%6B%65%79%73",
    ] {
        assert!(s.contains(expected), "{expected} missing from {s:?}");
    }
    assert!(!s.contains("/api/v1/keys"));
}
