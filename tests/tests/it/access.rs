//! Access control: every route of the route table, called with every kind of
//! credential, answers as the permission table says.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strata_api::routes::{Access, ROUTES};
use strata_auth::jwt::sign_hs256_for_tests;
use strata_auth::Role;
use strata_tests::{authed_client, Options, TestApp};

const OLD_SECRET: &str = "old-hs256-secret-0123456789abcdef-0123";
const NEW_SECRET: &str = "new-hs256-secret-0123456789abcdef-4567";

fn jwt_env() -> Vec<(String, String)> {
    vec![
        (
            "STRATA_JWT_HS256_KEYS".into(),
            format!("old:{OLD_SECRET},new:{NEW_SECRET}"),
        ),
        ("STRATA_JWT_ISSUER".into(), "https://idp.example".into()),
        ("STRATA_JWT_AUDIENCE".into(), "strata".into()),
        ("STRATA_JWT_LEEWAY_SECS".into(), "5".into()),
    ]
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn jwt(kid: &str, secret: &str, role: &str, aud: &str, exp_in: i64) -> String {
    let claims = json!({
        "sub": format!("user-{role}"), "role": role, "iss": "https://idp.example",
        "aud": aud, "iat": now(), "exp": now() + exp_in,
    });
    sign_hs256_for_tests(&claims, kid, secret)
}

/// A credential that must be refused: what it is, a client, and an extra header or query.
type BadCredential = (
    &'static str,
    reqwest::Client,
    Option<(&'static str, String)>,
);

/// Fills a route's path parameters with values that name nothing.
fn concrete(path: &str) -> String {
    path.replace("{job_id}", "01a2a3a4-0000-7000-8000-000000000000")
        .replace("{backup_id}", "no-such-backup")
        .replace("{id}", "no-such-thing")
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    extra: Option<(&str, &str)>,
) -> StatusCode {
    let m = Method::from_bytes(method.as_bytes()).unwrap();
    let mut url = format!("{base}{}", concrete(path));
    let mut req = client.request(m.clone(), &url);
    if let Some(("query", q)) = extra {
        url.push_str(q);
        req = client.request(m.clone(), &url);
    } else if let Some((h, v)) = extra {
        req = req.header(h, v);
    }
    if m == Method::POST || m == Method::PUT {
        // An empty object: valid JSON that every mutating route rejects or accepts
        // without side effects worth undoing.
        req = req.json(&json!({}));
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn every_route_answers_every_credential_as_the_permission_table_says() {
    let mut env = jwt_env();
    env.push(("STRATA_AUTH_MAX_FAILURES".into(), "1000000".into()));
    let app = TestApp::spawn(Options {
        workers: 0,
        env,
        ..Default::default()
    })
    .await;

    // One key per role, plus a revoked one.
    let mut keys = std::collections::HashMap::new();
    for role in ["viewer", "backup_operator", "admin", "revoked"] {
        let r = if role == "revoked" { "admin" } else { role };
        let (status, body) = app
            .post("/api/v1/keys", json!({ "name": role, "role": r }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(body["key"].as_str().unwrap().starts_with("strata_"));
        keys.insert(role, body);
    }
    let revoked_id = keys["revoked"]["id"].as_str().unwrap();
    let (status, _) = app
        .request(Method::DELETE, &format!("/api/v1/keys/{revoked_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let key = |r: &str| keys[r]["key"].as_str().unwrap().to_string();
    let (_, ft) = app.post("/api/v1/files/token", json!({})).await;
    let file_token = ft["token"].as_str().unwrap().to_string();

    let anonymous = reqwest::Client::new();
    // Credentials that must all be refused with 401.
    let bad: Vec<BadCredential> = vec![
        ("none", anonymous.clone(), None),
        (
            "malformed header",
            anonymous.clone(),
            Some(("authorization", "Basic dXNlcjpwYXNz".into())),
        ),
        (
            "empty bearer",
            anonymous.clone(),
            Some(("authorization", "Bearer ".into())),
        ),
        (
            "wrong key",
            authed_client(&strata_auth::keys::generate().token),
            None,
        ),
        (
            "garbage x-api-key",
            anonymous.clone(),
            Some(("x-api-key", "strata_nope".into())),
        ),
        ("revoked key", authed_client(&key("revoked")), None),
        (
            "expired JWT",
            authed_client(&jwt("new", NEW_SECRET, "admin", "strata", -3600)),
            None,
        ),
        (
            "JWT with unknown kid",
            authed_client(&jwt("other", NEW_SECRET, "admin", "strata", 600)),
            None,
        ),
        (
            "JWT with wrong aud",
            authed_client(&jwt("new", NEW_SECRET, "admin", "someone-else", 600)),
            None,
        ),
        (
            "JWT signed with the wrong secret",
            authed_client(&jwt("new", OLD_SECRET, "admin", "strata", 600)),
            None,
        ),
        (
            "file token on a non-download route",
            anonymous.clone(),
            Some(("query", format!("?token={file_token}"))),
        ),
    ];
    let good: Vec<(&str, Role, reqwest::Client)> = vec![
        ("viewer key", Role::Viewer, authed_client(&key("viewer"))),
        (
            "backup_operator key",
            Role::BackupOperator,
            authed_client(&key("backup_operator")),
        ),
        ("admin key", Role::Admin, authed_client(&key("admin"))),
        (
            "viewer JWT",
            Role::Viewer,
            authed_client(&jwt("new", NEW_SECRET, "viewer", "strata", 600)),
        ),
        (
            "backup_operator JWT (old kid)",
            Role::BackupOperator,
            authed_client(&jwt("old", OLD_SECRET, "backup_operator", "strata", 600)),
        ),
        (
            "admin JWT",
            Role::Admin,
            authed_client(&jwt("new", NEW_SECRET, "admin", "strata", 600)),
        ),
    ];

    let mut checked = 0;
    for route in ROUTES {
        for (what, client, extra) in &bad {
            let extra = extra.as_ref().map(|(h, v)| (*h, v.as_str()));
            let status = call(client, &app.base, route.method, route.path, extra).await;
            match route.access {
                // A login needs no credential (it checks a password); an optional one
                // answers anyone.
                Access::Public | Access::Login | Access::Optional => assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{} {} with {what}: {status}",
                    route.method,
                    route.path
                ),
                Access::Download(_) if *what == "file token on a non-download route" => {}
                _ => assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{} {} with {what}",
                    route.method,
                    route.path
                ),
            }
            checked += 1;
        }
        for (what, role, client) in &good {
            let status = call(client, &app.base, route.method, route.path, None).await;
            let need = match route.access {
                Access::Public | Access::Login | Access::Optional => None,
                Access::Role(r) | Access::Download(r) => Some(r),
            };
            match need {
                Some(need) if *role < need => {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{} {} with {what}",
                        route.method,
                        route.path
                    )
                }
                _ => assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{} {} with {what}: {status}",
                    route.method,
                    route.path
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * (bad.len() + good.len()));

    // The audit log holds denied requests and mutating ones, with who and what.
    let (status, audit) = app.get("/api/v1/audit?outcome=denied&limit=5").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(audit["next"].is_number(), "{audit}");
    assert!(items
        .iter()
        .all(|i| i["outcome"] == "denied" && i["request_id"].is_string()));
    let (_, page2) = app
        .get(&format!(
            "/api/v1/audit?outcome=denied&limit=5&from={}",
            audit["next"]
        ))
        .await;
    assert!(page2["items"][0]["id"].as_i64().unwrap() < items[4]["id"].as_i64().unwrap());
    let (_, created) = app
        .get("/api/v1/audit?action=POST%20/api/v1/keys&outcome=allowed")
        .await;
    let created = created["items"].as_array().unwrap();
    assert_eq!(created.len(), 4, "{created:?}");
    assert!(created
        .iter()
        .all(|i| i["actor"].as_str().unwrap().starts_with("key:") && i["role"] == "admin"));

    // Keys are listed without their secret; last use is recorded.
    let (_, listed) = app.get("/api/v1/keys").await;
    let text = listed.to_string();
    for r in ["viewer", "backup_operator", "admin", "revoked"] {
        assert!(!text.contains(&key(r)), "a key's secret is listed");
    }
    let viewer = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "viewer")
        .unwrap();
    assert!(viewer["last_used_at"].is_string(), "{viewer}");

    // None of the secrets reached the logs.
    let logs = app.full_logs();
    for secret in [
        key("viewer"),
        key("admin"),
        key("revoked"),
        app.admin_key.clone(),
        file_token.clone(),
        OLD_SECRET.into(),
        NEW_SECRET.into(),
    ] {
        assert!(!logs.contains(&secret), "a secret reached the logs");
    }
    let secret_part = |k: &str| k.rsplit('_').next().unwrap().to_string();
    assert!(!logs.contains(&secret_part(&key("admin"))));
}

#[tokio::test]
async fn jwt_keys_rotate_with_a_grace_period_and_expire() {
    let app = TestApp::spawn(Options {
        workers: 0,
        env: jwt_env(),
        ..Default::default()
    })
    .await;
    // Tokens of the old key keep working while the new key is active...
    let old = authed_client(&jwt("old", OLD_SECRET, "viewer", "strata", 600));
    let new = authed_client(&jwt("new", NEW_SECRET, "viewer", "strata", 600));
    for c in [&old, &new] {
        let s = c
            .get(format!("{}/api/v1/sources", app.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, StatusCode::OK);
    }
    // ...until they expire (beyond the 5 s leeway)...
    let expired = authed_client(&jwt("old", OLD_SECRET, "viewer", "strata", -10));
    let s = expired
        .get(format!("{}/api/v1/sources", app.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // ...and within the leeway they still pass.
    let skewed = authed_client(&jwt("old", OLD_SECRET, "viewer", "strata", -2));
    let s = skewed
        .get(format!("{}/api/v1/sources", app.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn repeated_failures_from_one_client_get_429_with_retry_after() {
    let app = TestApp::spawn(Options {
        workers: 0,
        env: vec![
            ("STRATA_AUTH_MAX_FAILURES".into(), "3".into()),
            ("STRATA_AUTH_LOCKOUT_SECS".into(), "30".into()),
        ],
        ..Default::default()
    })
    .await;
    let wrong = authed_client(&strata_auth::keys::generate().token);
    let url = format!("{}/api/v1/sources", app.base);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(wrong.get(&url).send().await.unwrap().status());
    }
    assert_eq!(
        &statuses[..3],
        &[StatusCode::UNAUTHORIZED; 3],
        "{statuses:?}"
    );
    let res = wrong.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_failures");
    // A request without any credential waits out the lockout too...
    let s = reqwest::get(&url).await.unwrap().status();
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // ...but a valid key is never refused for other attempts' failures: the limiter
    // counts and refuses failed attempts only.
    let s = app.client.get(&url).send().await.unwrap().status();
    assert_eq!(s, StatusCode::OK);
    let s = wrong.get(&url).send().await.unwrap().status();
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "the lockout runs its course"
    );
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_against_a_jwks_file() {
    use strata_auth::jwt::{sign_with_pem_for_tests, Algorithm};
    let dir = std::path::Path::new(strata_auth::TESTDATA_DIR);
    let app = TestApp::spawn(Options {
        workers: 0,
        env: vec![
            (
                "STRATA_JWT_JWKS_FILE".into(),
                dir.join("jwks.json").display().to_string(),
            ),
            ("STRATA_JWT_AUDIENCE".into(), "strata".into()),
        ],
        ..Default::default()
    })
    .await;
    let claims =
        json!({ "sub": "alice", "role": "backup_operator", "aud": "strata", "exp": now() + 600 });
    let rsa = std::fs::read_to_string(dir.join("rsa_private.pem")).unwrap();
    let ec = std::fs::read_to_string(dir.join("ec_private.pem")).unwrap();
    let other = std::fs::read_to_string(dir.join("rsa_other_private.pem")).unwrap();
    let url = format!("{}/api/v1/backup/list", app.base);
    for (alg, kid, pem, expect) in [
        (Algorithm::RS256, "test-rsa-1", &rsa, StatusCode::OK),
        (Algorithm::ES256, "test-ec-1", &ec, StatusCode::OK),
        // Signed by a key that is not in the JWKS, under a kid that is.
        (
            Algorithm::RS256,
            "test-rsa-1",
            &other,
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let token = sign_with_pem_for_tests(alg, kid, pem, &claims);
        let s = authed_client(&token)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, expect, "{alg:?} {kid}");
    }
    // The role is enforced: a backup_operator may not read the audit log.
    let token = sign_with_pem_for_tests(Algorithm::ES256, "test-ec-1", &ec, &claims);
    let s = authed_client(&token)
        .get(format!("{}/api/v1/audit", app.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_api_key_stops_working_at_its_expiry() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (status, body) = app
        .post(
            "/api/v1/keys",
            json!({ "name": "short", "role": "viewer", "expires_at": expires }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let short = authed_client(body["key"].as_str().unwrap());
    let url = format!("{}/api/v1/sources", app.base);
    assert_eq!(
        short.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        short.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // An expiry in the past, or a role that does not exist, is refused up front.
    let (status, body) = app
        .post(
            "/api/v1/keys",
            json!({ "name": "old", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "expires_at");
    let (status, body) = app
        .post("/api/v1/keys", json!({ "name": "x", "role": "root" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "role");
}
