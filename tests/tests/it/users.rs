//! User accounts and password logins: creating users, logging in and out, sessions as
//! credentials, password changes, the failure limiter, expiry, and `strata-api
//! create-user` — through the real API, PostgreSQL and logs.

use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_tests::{authed_client, Options, TestApp};

const ADMIN_PW: &str = "correct horse battery staple";
const VIEWER_PW: &str = "viewer's long password";

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn users_log_in_and_their_sessions_work_like_keys_until_logout() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    // Creating users (admin only), with clear errors for bad input.
    let (status, admin) = app
        .post(
            "/api/v1/users",
            json!({"email": "Ops@Example.com", "password": ADMIN_PW, "role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{admin}");
    assert_eq!(admin["email"], "Ops@Example.com");
    assert_eq!(admin["role"], "admin");
    assert!(admin.get("password").is_none() && admin.get("password_hash").is_none());
    let (status, viewer) = app
        .post(
            "/api/v1/users",
            json!({"email": "viewer@example.com", "password": VIEWER_PW, "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{viewer}");
    for (body, want, field) in [
        (
            json!({"email": "x@example.com", "password": "eleven char", "role": "viewer"}),
            "weak_password",
            "password",
        ),
        (
            json!({"email": "not an email", "password": ADMIN_PW, "role": "viewer"}),
            "invalid_email",
            "email",
        ),
        (
            json!({"email": "x@example.com", "password": ADMIN_PW, "role": "root"}),
            "invalid_role",
            "role",
        ),
        (
            json!({"email": "x@example.com", "password": ADMIN_PW, "role": "viewer", "admin": true}),
            "invalid_body",
            "admin",
        ),
    ] {
        let (status, err) = app.post("/api/v1/users", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(
            (code(&err), err["error"]["field"].as_str()),
            (want, Some(field)),
            "{err}"
        );
    }
    let (status, err) = app
        .post(
            "/api/v1/users",
            json!({"email": "ops@EXAMPLE.com", "password": ADMIN_PW, "role": "viewer"}),
        )
        .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::CONFLICT, "email_taken"),
        "{err}"
    );
    let (status, list) = app.get("/api/v1/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    assert!(!list.to_string().contains("argon2"), "{list}");

    // Wrong passwords and unknown emails get one answer.
    for (email, pw) in [
        ("ops@example.com", "wrong password here"),
        ("nobody@example.com", ADMIN_PW),
    ] {
        let (status, err) = login(&app, email, pw).await;
        assert_eq!(
            (status, code(&err)),
            (StatusCode::UNAUTHORIZED, "login_failed"),
            "{err}"
        );
    }

    // The viewer's session: a viewer's rights, its user in /auth/me.
    let (status, session) = login(&app, "VIEWER@example.com", VIEWER_PW).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let token = session["token"].as_str().unwrap().to_string();
    assert_eq!(session["user"]["email"], "viewer@example.com");
    let expires: chrono::DateTime<chrono::Utc> =
        session["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!(
        ttl > chrono::Duration::minutes(59) && ttl <= chrono::Duration::minutes(60),
        "{ttl}"
    );
    let as_viewer = authed_client(&token);
    let (status, me) = call(
        &as_viewer,
        reqwest::Method::GET,
        format!("{}/api/v1/auth/me", app.base),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["email"], "viewer@example.com");
    assert_eq!(me["role"], "viewer");
    let (status, _) = call(
        &as_viewer,
        reqwest::Method::GET,
        format!("{}/api/v1/sources", app.base),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = call(
        &as_viewer,
        reqwest::Method::POST,
        format!("{}/api/v1/keys", app.base),
        Some(json!({"name": "escalate", "role": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");

    // The admin's session creates a key, audited as the user.
    let (status, session) = login(&app, "ops@example.com", ADMIN_PW).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let admin_token = session["token"].as_str().unwrap().to_string();
    let as_admin = authed_client(&admin_token);
    let (status, key) = call(
        &as_admin,
        reqwest::Method::POST,
        format!("{}/api/v1/keys", app.base),
        Some(json!({"name": "made-by-a-user", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let user_actor = format!("user:{}", admin["id"].as_str().unwrap());
    assert_eq!(key["created_by"], user_actor.as_str());
    let (_, audit) = app.get("/api/v1/audit?limit=200").await;
    let entries = audit["items"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["actor"] == user_actor.as_str()
            && e["action"] == "POST /api/v1/keys"
            && e["outcome"] == "allowed"),
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "POST /api/v1/auth/login"
                && e["outcome"] == "allowed"
                && e["actor"] == user_actor.as_str()),
        "the login itself is audited: {audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "POST /api/v1/auth/login" && e["status"] == 401),
        "failed logins are audited: {audit}"
    );

    // A file token asked for by the session dies with it.
    let (status, file_token) = call(
        &as_viewer,
        reqwest::Method::POST,
        format!("{}/api/v1/files/token", app.base),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{file_token}");
    assert!(!file_token.to_string().contains(&token));

    // Logout: the token stops working at once; an API key has no session to end.
    let (status, _) = call(
        &as_viewer,
        reqwest::Method::POST,
        format!("{}/api/v1/auth/logout", app.base),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = call(
        &as_viewer,
        reqwest::Method::GET,
        format!("{}/api/v1/sources", app.base),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "{err}"
    );
    let (status, err) = app.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::BAD_REQUEST, "session_required"),
        "{err}"
    );

    // Changing one's password: the current one is checked, the new one too; other
    // sessions end, this one goes on.
    let (_, other) = login(&app, "ops@example.com", ADMIN_PW).await;
    let other = authed_client(other["token"].as_str().unwrap());
    let pw_url = format!("{}/api/v1/auth/password", app.base);
    let (status, err) = call(
        &as_admin,
        reqwest::Method::POST,
        pw_url.clone(),
        Some(
            json!({"current_password": "not my password", "new_password": "a brand new password"}),
        ),
    )
    .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::BAD_REQUEST, "wrong_password"),
        "{err}"
    );
    let (status, err) = call(
        &as_admin,
        reqwest::Method::POST,
        pw_url.clone(),
        Some(json!({"current_password": ADMIN_PW, "new_password": "short"})),
    )
    .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::BAD_REQUEST, "weak_password"),
        "{err}"
    );
    let (status, err) = call(
        &as_admin,
        reqwest::Method::POST,
        pw_url,
        Some(json!({"current_password": ADMIN_PW, "new_password": "a brand new password"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{err}");
    let sources = format!("{}/api/v1/sources", app.base);
    assert_eq!(
        call(&as_admin, reqwest::Method::GET, sources.clone(), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&other, reqwest::Method::GET, sources.clone(), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "ops@example.com", ADMIN_PW).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "ops@example.com", "a brand new password")
            .await
            .0,
        StatusCode::OK
    );

    // Deleting a user ends their sessions.
    let user_url = format!("/api/v1/users/{}", admin["id"].as_str().unwrap());
    let (status, _) = app.request(reqwest::Method::DELETE, &user_url, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&as_admin, reqwest::Method::GET, sources, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, err) = app.request(reqwest::Method::DELETE, &user_url, None).await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::NOT_FOUND, "user_not_found"),
        "{err}"
    );
    for odd in ["%2E%2E", "..%2Fkeys", "x%00y"] {
        let (status, _) = app
            .request(
                reqwest::Method::DELETE,
                &format!("/api/v1/users/{odd}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{odd}");
    }
    let (status, _) = call(
        &authed_client(&key_of(&key)),
        reqwest::Method::GET,
        format!("{}/api/v1/users", app.base),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer key lists no users");

    // No password or token in any log line.
    let logs = app.full_logs();
    for secret in [
        ADMIN_PW,
        VIEWER_PW,
        "a brand new password",
        &token,
        &admin_token,
    ] {
        assert!(!logs.contains(secret), "{secret:?} is in the logs");
    }
}

fn key_of(created: &Value) -> String {
    created["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn failed_logins_are_limited_and_expired_sessions_refused() {
    let app = TestApp::spawn(Options {
        workers: 0,
        env: vec![
            ("STRATA_AUTH_MAX_FAILURES".into(), "3".into()),
            ("STRATA_AUTH_LOCKOUT_SECS".into(), "600".into()),
        ],
        ..Default::default()
    })
    .await;
    let (status, _) = app
        .post(
            "/api/v1/users",
            json!({"email": "a@example.com", "password": ADMIN_PW, "role": "backup_operator"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, session) = login(&app, "a@example.com", ADMIN_PW).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let token = session["token"].as_str().unwrap().to_string();

    // Expired: the session's end is the server's word, whatever the token says.
    let mut db = app.db().await;
    sqlx::query("UPDATE user_sessions SET expires_at = now() - interval '1 second'")
        .execute(&mut db)
        .await
        .unwrap();
    let (status, err) = call(
        &authed_client(&token),
        reqwest::Method::GET,
        format!("{}/api/v1/sources", app.base),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "{err}"
    );
    // A forged token (another signature) is refused too.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let (status, _) = call(
        &authed_client(&forged),
        reqwest::Method::GET,
        format!("{}/api/v1/sources", app.base),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Two more failures (the expired and the forged token were the first two) lock the
    // client out: even the right password gets 429 then.
    let (status, _) = login(&app, "a@example.com", "wrong password number one").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"email": "a@example.com", "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    let err: Value = res.json().await.unwrap();
    assert_eq!(code(&err), "too_many_failures", "{err}");
}

#[tokio::test]
async fn create_user_reads_the_password_from_stdin_for_the_first_login() {
    let mut app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let pw = "first admin's password";
    let (status, out, log) = app.run_api_command_with_input(
        &[
            "create-user",
            "--email",
            "first@example.com",
            "--role",
            "admin",
        ],
        &[],
        &format!("{pw}\n"),
    );
    assert!(status.success(), "{out}\n{log}");
    let id = out.trim();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{out}");
    let (status, session) = login(&app, "first@example.com", pw).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["user"]["role"], "admin");
    assert!(!log.contains(pw), "the password is in the log");

    for (args, input, why) in [
        (
            vec![
                "create-user",
                "--email",
                "second@example.com",
                "--role",
                "admin",
            ],
            "too short\n",
            "at least 12 characters",
        ),
        (
            vec![
                "create-user",
                "--email",
                "first@EXAMPLE.com",
                "--role",
                "viewer",
            ],
            "another long password\n",
            "exists already",
        ),
        (
            vec!["create-user", "--email", "nope", "--role", "viewer"],
            "another long password\n",
            "--email",
        ),
        (
            vec!["create-user", "--email", "third@example.com"],
            "another long password\n",
            "--role is required",
        ),
    ] {
        let (status, out, log) = app.run_api_command_with_input(&args, &[], input);
        assert_eq!(status.code(), Some(2), "{args:?}: {out}\n{log}");
        assert!(log.contains(why), "{args:?}: {log}");
    }
    let (_, list) = app.get("/api/v1/users").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}
