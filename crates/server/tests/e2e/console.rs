//! The console's sign-in from the outside, over HTTP as a browser speaks it: the admin-key form,
//! the cookie, CSRF on every change, signing out (here and everywhere), slowing down guessing, the
//! installation's state. (Team sign-in through a real OpenID provider runs in the browser tests.)

use crate::harness::*;
use axum::http::Method;
use serde_json::{json, Value};

struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { client, base: app.base.clone(), cookie: None }
    }

    /// Posts the sign-in form; returns (status, location, set-cookie).
    async fn sign_in(&mut self, key: &str, origin: Option<&str>) -> (u16, String, Option<String>) {
        let mut req = self.client.post(format!("{}/console/sign-in", self.base)).form(&[("key", key)]);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let set_cookie = res.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
        if let Some(c) = &set_cookie {
            self.cookie = Some(c.split(';').next().unwrap().to_owned());
        }
        (status, location, set_cookie)
    }

    fn with_cookie(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => req.header("cookie", c),
            None => req,
        }
    }

    async fn page(&self, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let res = self.with_cookie(self.client.get(format!("{}{path}", self.base))).send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, res.text().await.unwrap(), headers)
    }

    /// The CSRF token the shell page carries.
    async fn csrf(&self) -> String {
        let (status, html, _) = self.page("/console").await;
        assert_eq!(status, 200, "{html}");
        let start = html.find("data-csrf=\"").expect("the shell carries its CSRF token") + 11;
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    }

    async fn api(&self, method: Method, path: &str, csrf: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = self.with_cookie(self.client.request(method, format!("{}/api/v1{path}", self.base))).header("origin", &self.base);
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_console_signs_in_with_an_admin_key_and_every_change_needs_its_csrf_token() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);
    // Not signed in: the console sends to its sign-in page, which asks for an admin key.
    let (status, _, headers) = browser.page("/console").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/sign-in");
    let (status, html, headers) = browser.page("/console/sign-in").await;
    assert_eq!(status, 200);
    assert!(html.contains("<label for=\"key\">Admin API key</label>"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");

    // A read-only key, a workspace key, a wrong key: refused, and recorded.
    let read_only =
        app.ok(Method::POST, "/api-keys", Some(json!({"name": "ro", "scope": "read_only"})), 201).await["key"].as_str().unwrap().to_owned();
    for key in [read_only.as_str(), "sk_not_a_key_00000000000000000000"] {
        let (status, location, cookie) = browser.sign_in(key, Some(&app.base)).await;
        assert_eq!((status, location.as_str(), cookie), (303, "/console/sign-in?error=key", None));
    }
    // A form posted from another site is refused (login CSRF), as is one with no Origin at all.
    let (_, location, cookie) = browser.sign_in(ADMIN_KEY, Some("https://evil.example")).await;
    assert_eq!((location.as_str(), cookie), ("/console/sign-in?error=origin", None));
    let (_, location, _) = browser.sign_in(ADMIN_KEY, None).await;
    assert_eq!(location, "/console/sign-in?error=origin");

    // The admin key: a session cookie, HttpOnly and SameSite=Strict (not Secure over plain http).
    let (status, location, cookie) = browser.sign_in(ADMIN_KEY, Some(&app.base)).await;
    assert_eq!((status, location.as_str()), (303, "/console"));
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.starts_with("sy_console=cs_"), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"));
    let (status, html, headers) = browser.page("/console").await;
    assert_eq!(status, 200);
    assert!(html.contains("data-role=\"owner\""));
    assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));

    // Reads need only the cookie; changes need the page's CSRF token too.
    let (status, _) = browser.api(Method::GET, "/workspaces", None, None).await;
    assert_eq!(status, 200);
    let (status, v) = browser.api(Method::POST, "/workspaces", None, Some(json!({"name": "no token"}))).await;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("CSRF"));
    let (status, _) = browser.api(Method::POST, "/workspaces", Some("forged"), Some(json!({"name": "forged"}))).await;
    assert_eq!(status, 403);
    let csrf = browser.csrf().await;
    let (status, made) = browser.api(Method::POST, "/workspaces", Some(&csrf), Some(json!({"name": "from the console"}))).await;
    assert_eq!(status, 201, "{made}");

    // The audit log says who: the sign-ins, the refusals, and the change made through the console.
    let log = app.ok(Method::GET, "/audit-log?limit=200", None, 200).await;
    let actions: Vec<&str> = log["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"sign_in.succeeded"), "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "sign_in.failed").count(), 4, "{actions:?}");
    assert!(actions.contains(&"credential.refused"), "the CSRF refusals: {actions:?}");
    let created =
        log["data"].as_array().unwrap().iter().find(|e| e["action"] == "workspace.create" && e["resource_id"] == made["id"]).unwrap();
    assert_eq!(created["actor"]["kind"], "admin_key");
    assert!(!log.to_string().contains(ADMIN_KEY) && !log.to_string().contains(&read_only));

    // The installation's state: this node, and the queue.
    let (status, installation) = browser.api(Method::GET, "/installation", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(installation["queue"]["dead"], 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, installation) = browser.api(Method::GET, "/installation", None, None).await;
        if let Some(node) = installation["nodes"].as_array().and_then(|n| n.first()) {
            assert_eq!((node["role"].as_str(), node["stale"].as_bool()), (Some("all"), Some(false)));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no node heartbeat: {installation}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Signing out ends the session: the cookie no longer works, even if kept.
    let kept = browser.cookie.clone();
    let res = browser
        .with_cookie(browser.client.post(format!("{}/console/sign-out", app.base)))
        .header("origin", &app.base)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    browser.cookie = kept;
    let (status, _) = browser.api(Method::GET, "/workspaces", None, None).await;
    assert_eq!(status, 401);
    app.shutdown().await;
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session_and_guessing_keys_is_slowed_down() {
    let app = TestApp::spawn().await;
    let mut laptop = Browser::new(&app);
    let mut phone = Browser::new(&app);
    laptop.sign_in(ADMIN_KEY, Some(&app.base)).await;
    phone.sign_in(ADMIN_KEY, Some(&app.base)).await;
    // Sessions signed in with the configured admin key are one holder's: both end.
    let listed = app.ok(Method::GET, "/console-sessions", None, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let csrf = laptop.csrf().await;
    let res = laptop
        .with_cookie(laptop.client.post(format!("{}/console/sign-out", app.base)))
        .header("origin", &app.base)
        .form(&[("csrf", csrf.as_str()), ("everywhere", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(phone.api(Method::GET, "/workspaces", None, None).await.0, 401);
    assert_eq!(laptop.api(Method::GET, "/workspaces", None, None).await.0, 401);

    // With a stored admin key, "everywhere" ends every session of that key.
    let key =
        app.ok(Method::POST, "/api-keys", Some(json!({"name": "ops", "scope": "admin"})), 201).await["key"].as_str().unwrap().to_owned();
    let (mut a, mut b) = (Browser::new(&app), Browser::new(&app));
    a.sign_in(&key, Some(&app.base)).await;
    b.sign_in(&key, Some(&app.base)).await;
    let csrf = a.csrf().await;
    a.with_cookie(a.client.post(format!("{}/console/sign-out", app.base)))
        .header("origin", &app.base)
        .form(&[("csrf", csrf.as_str()), ("everywhere", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(b.api(Method::GET, "/workspaces", None, None).await.0, 401);
    // Revoking the key ends its sign-ins too.
    let mut c = Browser::new(&app);
    c.sign_in(&key, Some(&app.base)).await;
    assert_eq!(c.api(Method::GET, "/workspaces", None, None).await.0, 200);
    let id = app.ok(Method::GET, "/api-keys", None, 200).await["data"][0]["id"].as_str().unwrap().to_owned();
    app.ok(Method::DELETE, &format!("/api-keys/{id}"), None, 204).await;
    assert_eq!(c.api(Method::GET, "/workspaces", None, None).await.0, 401);

    // Five wrong keys from one address are free; then each try waits, and says how long.
    let mut guesser = Browser::new(&app);
    for _ in 0..5 {
        let (status, location, _) = guesser.sign_in("sk_guess_000000000000000000000000", Some(&app.base)).await;
        assert_eq!((status, location.as_str()), (303, "/console/sign-in?error=key"));
    }
    let res = guesser
        .client
        .post(format!("{}/console/sign-in", app.base))
        .header("origin", &app.base)
        .form(&[("key", ADMIN_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429, "even the right key waits its turn");
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert!(res.text().await.unwrap().contains("Too many failed sign-ins"));
    app.shutdown().await;
}
