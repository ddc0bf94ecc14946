//! `/api/greetings`: create, list, read, replace and delete stored greetings.

use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::greetings::{self, Greeting, GreetingInput, GreetingPage};
use crate::http::{JSON, Response};
use crate::pagination::PageRequest;
use crate::router::Call;
use crate::validation::json_body;

/// Stores a new greeting.
#[utoipa::path(
    post,
    path = "/api/greetings",
    tag = "greetings",
    request_body = GreetingInput,
    responses(
        (status = 201, description = "The stored greeting; `Location` is its URL", body = Greeting,
            headers(("location" = String, description = "`/api/greetings/{id}`"))),
        (status = 400, description = "`invalid_json`, or `invalid_body`: the body broke off", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    )
)]
pub async fn create_greeting(call: &Call<'_>) -> Result<Response, ApiError> {
    let greeting = greetings::create(call.platform, json_body(call.request)?).await?;
    let location = format!("/api/greetings/{}", greeting.id);
    Ok(Response::json(201, &greeting).with_header("location", location))
}

/// Lists greetings, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/greetings",
    tag = "greetings",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 20 when not given"),
        ("cursor" = Option<String>, Query, pattern = "^[1-9][0-9]{0,18}$", description = "`next_cursor` of the previous page (opaque)"),
    ),
    responses(
        (status = 200, description = "A page of greetings", body = GreetingPage),
        (status = 400, description = "`invalid_parameter`: a bad limit or cursor", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    )
)]
pub async fn list_greetings(call: &Call<'_>) -> Result<Response, ApiError> {
    let request = PageRequest::from_query(call.request.query())?;
    let page = greetings::list(call.platform, request).await?;
    Ok(Response::json(200, &page))
}

/// Reads one greeting.
#[utoipa::path(
    get,
    path = "/api/greetings/{id}",
    tag = "greetings",
    params(("id" = String, Path, description = "The greeting's id")),
    responses(
        (status = 200, description = "The greeting", body = Greeting),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    )
)]
pub async fn get_greeting(call: &Call<'_>) -> Result<Response, ApiError> {
    let greeting = greetings::find(call.platform.store, &id_param(call)?).await?;
    Ok(Response::json(200, &greeting))
}

/// Replaces a greeting's name and message, keeping its id and `created_at`.
#[utoipa::path(
    put,
    path = "/api/greetings/{id}",
    tag = "greetings",
    params(("id" = String, Path, description = "The greeting's id")),
    request_body = GreetingInput,
    responses(
        (status = 200, description = "The greeting as stored now", body = Greeting),
        (status = 400, description = "`invalid_json`, or `invalid_body`: the body broke off", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: other writers kept changing it; try again", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    )
)]
pub async fn replace_greeting(call: &Call<'_>) -> Result<Response, ApiError> {
    let input = json_body(call.request)?;
    let greeting = greetings::replace(call.platform, &id_param(call)?, input).await?;
    Ok(Response::json(200, &greeting))
}

/// Deletes a greeting.
#[utoipa::path(
    delete,
    path = "/api/greetings/{id}",
    tag = "greetings",
    params(("id" = String, Path, description = "The greeting's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    )
)]
pub async fn delete_greeting(call: &Call<'_>) -> Result<Response, ApiError> {
    greetings::delete(call.platform, &id_param(call)?).await?;
    Ok(Response::with_content_type(204, JSON, Vec::new()))
}

/// The path's `{id}`. One that is not UTF-8 once decoded is no greeting's id, a 404 as for
/// any other id that is not a ULID.
fn id_param(call: &Call<'_>) -> Result<String, ApiError> {
    call.path_param("id")
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "No greeting has that id."))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::fakes::{TestApp, body_json, body_text, error_code};
    use crate::http::{JSON, Request, Response};
    use crate::limits::BODY_MAX_BYTES;

    fn create(app: &TestApp, body: &str) -> Value {
        let response = app.send_json("POST", "/api/greetings", body);
        assert_eq!(response.status, 201, "{}", body_text(&response));
        body_json(&response)
    }

    /// The path of a greeting for Ada, just created.
    fn created_ada(app: &TestApp) -> String {
        format!(
            "/api/greetings/{}",
            id_of(&create(app, r#"{"name":"Ada"}"#))
        )
    }

    fn id_of(greeting: &Value) -> String {
        greeting["id"].as_str().expect("an id").to_owned()
    }

    fn assert_error(response: &Response, status: u16, code: &str) {
        assert_eq!(
            (response.status, error_code(response).as_str()),
            (status, code),
            "{}",
            body_text(response)
        );
    }

    #[test]
    fn create_stores_the_greeting_and_answers_it_with_its_location() {
        let app = TestApp::new();
        let response = app.send_json("POST", "/api/greetings", r#"{"name":"Ada"}"#);
        assert_eq!(response.status, 201);
        assert_eq!(response.header("content-type"), Some(JSON));
        // The fakes' first id: 1_700_000_000_000 ms and random bits 1.
        assert_eq!(
            body_text(&response),
            r#"{"id":"01HF7YAT000000000000000001","name":"Ada","message":"Hello, Ada!","created_at":"2023-11-14T22:13:20.000Z","updated_at":"2023-11-14T22:13:20.000Z"}"#
        );
        assert_eq!(
            response.header("location"),
            Some("/api/greetings/01HF7YAT000000000000000001")
        );
        let stored = app.get("/api/greetings/01HF7YAT000000000000000001");
        assert_eq!((stored.status, stored.body), (200, response.body));
    }

    #[test]
    fn create_keeps_a_given_message_even_an_empty_one() {
        let app = TestApp::new();
        let greeting = create(&app, r#"{"name":"Ada","message":"Good morning!"}"#);
        assert_eq!(greeting["message"], "Good morning!");
        assert_eq!(
            create(&app, r#"{"name":"Ada","message":""}"#)["message"],
            ""
        );
        assert_eq!(
            create(&app, r#"{"name":"Ada","message":null}"#)["message"],
            "Hello, Ada!"
        );
    }

    #[test]
    fn create_accepts_the_limits_exactly_counting_characters() {
        let app = TestApp::new();
        let body = json!({ "name": "ß".repeat(64), "message": "€".repeat(280) }).to_string();
        assert_eq!(create(&app, &body)["name"], "ß".repeat(64));
    }

    #[test]
    fn create_refuses_bad_requests_with_the_matching_status() {
        let app = TestApp::new();
        let post = |content_type: &str, body: &str| {
            app.send(
                Request::new("POST", "/api/greetings")
                    .with_header("content-type", content_type)
                    .with_body(body),
            )
        };
        assert_error(
            &post("text/plain", r#"{"name":"Ada"}"#),
            415,
            "unsupported_media_type",
        );
        assert_error(
            &app.send(Request::new("POST", "/api/greetings").with_body("{}")),
            415,
            "unsupported_media_type",
        );
        assert_error(&post(JSON, r#"{"name":"Ada""#), 400, "invalid_json");
        assert_error(&post(JSON, ""), 400, "invalid_json");
        assert_error(
            &post(JSON, &" ".repeat(BODY_MAX_BYTES + 1)),
            413,
            "payload_too_large",
        );
        for body in [
            r#"{}"#,
            r#"{"message":"hi"}"#,
            r#"{"name":"Ada","extra":true}"#,
            r#"{"name":42}"#,
            r#"{"name":"Ada","message":7}"#,
            r#"{"name":""}"#,
            r#"{"name":"  "}"#,
            r#"{"name":"Ada\nLovelace"}"#,
            r#"["Ada"]"#,
        ] {
            assert_error(&post(JSON, body), 422, "validation_failed");
        }
        let too_long_name = json!({ "name": "a".repeat(65) }).to_string();
        assert_error(&post(JSON, &too_long_name), 422, "validation_failed");
        let too_long_message = json!({ "name": "Ada", "message": "a".repeat(281) }).to_string();
        assert_error(&post(JSON, &too_long_message), 422, "validation_failed");
        assert_eq!(app.store.get_keys_count(), 0);
    }

    #[test]
    fn validation_messages_say_what_is_wrong() {
        let app = TestApp::new();
        let response = app.send_json("POST", "/api/greetings", r#"{"name":"Ada","nmae":"x"}"#);
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"validation_failed","message":"The body does not fit the schema: unknown field `nmae`, expected `name` or `message` at line 1 column 20."}}"#
        );
        let response = app.send_json(
            "POST",
            "/api/greetings",
            &json!({ "name": "a".repeat(65) }).to_string(),
        );
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"validation_failed","message":"name must be 1 to 64 characters long, not 65."}}"#
        );
    }

    #[test]
    fn get_finds_greetings_by_id_in_either_case_and_404s_others() {
        let app = TestApp::new();
        let id = id_of(&create(&app, r#"{"name":"Ada"}"#));
        assert_eq!(
            app.get(&format!("/api/greetings/{}", id.to_lowercase()))
                .status,
            200
        );
        assert_error(
            &app.get("/api/greetings/01HF7YAT00000000000000000Z"),
            404,
            "not_found",
        );
        assert_error(&app.get("/api/greetings/not-an-id"), 404, "not_found");
        assert_error(&app.get("/api/greetings/%FF"), 404, "not_found");
        let response = app.get("/api/greetings/nope");
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"not_found","message":"No greeting has the id nope."}}"#
        );
    }

    #[test]
    fn put_replaces_name_and_message_keeping_id_and_creation_time() {
        let app = TestApp::new();
        let created = create(&app, r#"{"name":"Ada","message":"Hi"}"#);
        let path = format!("/api/greetings/{}", id_of(&created));
        let response = app.send_json("PUT", &path, r#"{"name":"Grace"}"#);
        assert_eq!(response.status, 200);
        let replaced = body_json(&response);
        assert_eq!(
            (&replaced["id"], &replaced["created_at"]),
            (&created["id"], &created["created_at"])
        );
        assert_eq!(
            (&replaced["name"], &replaced["message"]),
            (&json!("Grace"), &json!("Hello, Grace!"))
        );
        assert_eq!(replaced["updated_at"], "2023-11-14T22:13:20.001Z");
        assert_eq!(body_json(&app.get(&path)), replaced);
    }

    #[test]
    fn put_validates_like_post_and_404s_unknown_ids() {
        let app = TestApp::new();
        let path = created_ada(&app);
        assert_error(
            &app.send_json("PUT", &path, r#"{"name":"Ada","x":1}"#),
            422,
            "validation_failed",
        );
        assert_error(&app.send_json("PUT", &path, "{"), 400, "invalid_json");
        assert_error(
            &app.send(Request::new("PUT", &path).with_body("{}")),
            415,
            "unsupported_media_type",
        );
        assert_error(
            &app.send_json(
                "PUT",
                "/api/greetings/01HF7YAT00000000000000000Z",
                r#"{"name":"A"}"#,
            ),
            404,
            "not_found",
        );
        assert_eq!(body_json(&app.get(&path))["name"], "Ada");
    }

    #[test]
    fn delete_removes_the_greeting_once() {
        let app = TestApp::new();
        let path = created_ada(&app);
        let response = app.send(Request::new("DELETE", &path));
        assert_eq!((response.status, response.body.len()), (204, 0));
        assert_eq!(response.header("content-type"), Some(JSON));
        assert_error(&app.get(&path), 404, "not_found");
        assert_error(&app.send(Request::new("DELETE", &path)), 404, "not_found");
    }

    fn list(app: &TestApp, query: &str) -> (Vec<String>, Value) {
        let response = app.get(&format!("/api/greetings{query}"));
        assert_eq!(response.status, 200, "{}", body_text(&response));
        let page = body_json(&response);
        let names = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|g| g["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        (names, page["next_cursor"].clone())
    }

    /// Every greeting the listing holds, following cursors, by name; ids must not repeat.
    fn list_all(app: &TestApp) -> Vec<String> {
        let (mut names, mut ids, mut query) = (Vec::new(), Vec::new(), "?limit=2".to_owned());
        loop {
            let response = app.get(&format!("/api/greetings{query}"));
            assert_eq!(response.status, 200, "{}", body_text(&response));
            let page = body_json(&response);
            for item in page["items"].as_array().expect("items") {
                names.push(item["name"].as_str().expect("a name").to_owned());
                ids.push(id_of(item));
            }
            match page["next_cursor"].as_str() {
                Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
                None => break,
            }
        }
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "listed twice: {names:?}");
        names
    }

    #[test]
    fn greetings_stored_before_the_log_are_listed_after_the_upgrade() {
        let app = TestApp::new();
        for (ms, name) in [(1_000, "old-a"), (2_000, "old-b"), (3_000, "old-c")] {
            let id = crate::ids::GreetingId::new(ms, 7).to_string();
            let record = json!({
                "id": id, "name": name, "message": "Hi", "created_at": "2001-01-01T00:00:00.000Z",
                "updated_at": "2001-01-01T00:00:00.000Z",
            });
            app.store
                .set_raw(&format!("greeting:{id}"), record.to_string().as_bytes());
        }
        let new = create(&app, r#"{"name":"new"}"#);
        assert_eq!(list_all(&app), ["new", "old-c", "old-b", "old-a"]);
        let old_b =
            "/api/greetings/".to_owned() + &crate::ids::GreetingId::new(2_000, 7).to_string();
        assert_eq!(app.send(Request::new("DELETE", &old_b)).status, 204);
        assert_eq!(list_all(&app), ["new", "old-c", "old-a"]);
        assert_eq!(
            body_json(&app.get(&format!("/api/greetings/{}", id_of(&new))))["name"],
            "new"
        );
    }

    #[test]
    fn a_replace_that_keeps_losing_to_other_writers_is_a_409() {
        let app = TestApp::new();
        let path = created_ada(&app);
        app.store.rival_writer.set(true);
        let response = app.send_json("PUT", &path, r#"{"name":"Grace"}"#);
        assert_error(&response, 409, "conflict");
    }

    /// Spin's Redis store answers `cas-failed` to every swap, also one that wrote: replacing,
    /// deleting and listing (with records from before the log) still work on it.
    #[test]
    fn greetings_work_on_a_store_whose_swaps_that_wrote_report_failure() {
        let app = TestApp::new();
        app.store.swaps_report_failure.set(true);
        let id = crate::ids::GreetingId::new(1_000, 7).to_string();
        let record = json!({
            "id": id, "name": "old", "message": "Hi", "created_at": "2001-01-01T00:00:00.000Z",
            "updated_at": "2001-01-01T00:00:00.000Z",
        });
        app.store
            .set_raw(&format!("greeting:{id}"), record.to_string().as_bytes());
        let a = id_of(&create(&app, r#"{"name":"a"}"#));
        let b = id_of(&create(&app, r#"{"name":"b"}"#));
        assert_eq!(list_all(&app), ["b", "a", "old"]);
        let path = format!("/api/greetings/{a}");
        let replaced = app.send_json("PUT", &path, r#"{"name":"a2"}"#);
        assert_eq!(replaced.status, 200, "{}", body_text(&replaced));
        assert_eq!(body_json(&app.get(&path))["name"], "a2");
        let path = format!("/api/greetings/{b}");
        assert_eq!(app.send(Request::new("DELETE", &path)).status, 204);
        assert_eq!(list_all(&app), ["a2", "old"]);
    }

    /// A crash at every store call of a create, a delete and a replace in turn, then a restart
    /// that retries what was not acknowledged: the listing never fails, never lists a greeting
    /// twice, and ends exactly as if nothing had crashed.
    #[test]
    fn a_crash_at_any_store_call_loses_nothing_acknowledged() {
        for calls in 0..24 {
            let app = TestApp::new();
            let a = id_of(&create(&app, r#"{"name":"a"}"#));
            let c = id_of(&create(&app, r#"{"name":"c"}"#));
            app.store.calls_left.set(Some(calls));
            let create_d = || {
                app.send_json("POST", "/api/greetings", r#"{"name":"d"}"#)
                    .status
            };
            let delete_a = || {
                app.send(Request::new("DELETE", &format!("/api/greetings/{a}")))
                    .status
            };
            let replace_c = || {
                let path = format!("/api/greetings/{c}");
                app.send_json("PUT", &path, r#"{"name":"c2"}"#).status
            };
            let acknowledged = [create_d() == 201, delete_a() == 204, replace_c() == 200];
            app.store.calls_left.set(None);
            let listed = list_all(&app);
            if acknowledged[0] {
                assert!(
                    listed.contains(&"d".to_owned()),
                    "crash after call {calls}: {listed:?}"
                );
            }
            if acknowledged[1] {
                assert!(
                    !listed.contains(&"a".to_owned()),
                    "crash after call {calls}: {listed:?}"
                );
            }
            if !acknowledged[0] {
                assert_eq!(create_d(), 201);
            }
            if !acknowledged[1] {
                assert!([204, 404].contains(&delete_a()), "crash after call {calls}");
            }
            if !acknowledged[2] {
                assert_eq!(replace_c(), 200, "crash after call {calls}");
            }
            assert_eq!(list_all(&app), ["d", "c2"], "crash after call {calls}");
        }
    }

    #[test]
    fn list_is_empty_without_greetings() {
        let response = TestApp::new().get("/api/greetings");
        assert_eq!(body_text(&response), r#"{"items":[],"next_cursor":null}"#);
    }

    #[test]
    fn list_pages_newest_first_with_a_cursor() {
        let app = TestApp::new();
        for name in ["a", "b", "c", "d", "e"] {
            create(&app, &json!({ "name": name }).to_string());
        }
        let (names, cursor) = list(&app, "?limit=2");
        assert_eq!(names, ["e", "d"]);
        let (names, cursor) = list(
            &app,
            &format!("?limit=2&cursor={}", cursor.as_str().expect("a cursor")),
        );
        assert_eq!(names, ["c", "b"]);
        let (names, cursor) = list(
            &app,
            &format!("?limit=2&cursor={}", cursor.as_str().expect("a cursor")),
        );
        assert_eq!((names, cursor), (vec!["a".to_owned()], Value::Null));
        assert_eq!(list(&app, "").0, ["e", "d", "c", "b", "a"]);
    }

    #[test]
    fn list_ends_on_a_full_page_when_the_count_is_a_multiple_of_the_limit() {
        let app = TestApp::new();
        for name in ["a", "b", "c", "d"] {
            create(&app, &json!({ "name": name }).to_string());
        }
        let (_, cursor) = list(&app, "?limit=2");
        let (names, cursor) = list(
            &app,
            &format!("?limit=2&cursor={}", cursor.as_str().expect("a cursor")),
        );
        assert_eq!(
            (names, cursor),
            (vec!["b".to_owned(), "a".to_owned()], Value::Null)
        );
    }

    #[test]
    fn list_ignores_other_keys_in_the_store() {
        let app = TestApp::new();
        create(&app, r#"{"name":"Ada"}"#);
        app.store.set_raw("probe:ready", b"x");
        app.store.set_raw("greeting:not-a-ulid", b"x");
        assert_eq!(list(&app, "").0, ["Ada"]);
    }

    #[test]
    fn list_refuses_bad_limits_and_cursors() {
        let app = TestApp::new();
        for query in ["?limit=0", "?limit=101", "?limit=ten", "?cursor=zzz"] {
            assert_error(
                &app.get(&format!("/api/greetings{query}")),
                400,
                "invalid_parameter",
            );
        }
    }

    #[test]
    fn a_store_outage_is_503_on_every_greeting_route() {
        let app = TestApp::new();
        let path = created_ada(&app);
        app.store.down.set(true);
        for response in [
            app.send_json("POST", "/api/greetings", r#"{"name":"Ada"}"#),
            app.get("/api/greetings"),
            app.get(&path),
            app.send_json("PUT", &path, r#"{"name":"Ada"}"#),
            app.send(Request::new("DELETE", &path)),
        ] {
            assert_error(&response, 503, "store_unavailable");
        }
    }

    #[test]
    fn a_corrupt_record_is_a_500_not_a_panic() {
        let app = TestApp::new();
        let id = id_of(&create(&app, r#"{"name":"Ada"}"#));
        app.store.set_raw(&format!("greeting:{id}"), b"{not json");
        assert_error(
            &app.get(&format!("/api/greetings/{id}")),
            500,
            "internal_error",
        );
        assert_error(&app.get("/api/greetings"), 500, "internal_error");
    }
}
