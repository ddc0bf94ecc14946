//! The OpenAPI 3.1 document, generated from the route table and served from `openapi.json`.
//!
//! Tests build the document from every route's `#[utoipa::path]` annotation and check that
//! `component/core/openapi.json` is exactly that document; `GREETER_UPDATE_OPENAPI=1 cargo test
//! -p greeter-core` rewrites the file. The component serves the file as it is: building the document
//! at run time would put utoipa's builders and their serializers in the .wasm (about 170 KB,
//! over its size budget).

/// The document, as compact JSON.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

#[cfg(test)]
pub use generation::DocumentParts;

#[cfg(test)]
mod generation {
    use utoipa::__dev::{SchemaReferences, Tags};
    use utoipa::openapi::path::Paths;
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, RefOr};

    use crate::router::Route;

    /// What the routes contribute: their operations, and the schemas those refer to.
    pub struct DocumentParts {
        paths: Paths,
        schemas: Vec<(String, RefOr<Schema>)>,
    }

    impl DocumentParts {
        /// Adds the operation, tags and schemas `#[utoipa::path]` generated as `P`.
        pub fn add<P: utoipa::Path + SchemaReferences + Tags<'static>>(&mut self) {
            let mut operation = P::operation();
            operation.tags = Some(P::tags().into_iter().map(str::to_owned).collect());
            self.paths
                .add_path_operation(P::path(), P::methods(), operation);
            P::schemas(&mut self.schemas);
        }
    }

    pub fn document(routes: &[Route]) -> OpenApi {
        let mut parts = DocumentParts {
            paths: Paths::new(),
            schemas: Vec::new(),
        };
        for route in routes {
            (route.document)(&mut parts);
        }
        let info = InfoBuilder::new()
            .title("Greeter")
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(env!("CARGO_PKG_DESCRIPTION")));
        OpenApiBuilder::new()
            .info(info)
            .paths(parts.paths)
            .components(Some(
                ComponentsBuilder::new()
                    .schemas_from_iter(parts.schemas)
                    .build(),
            ))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::OPENAPI_JSON;
    use super::generation::document;
    use crate::limits::{
        LIST_LIMIT_MAX, MESSAGE_MAX_CHARS, MIRROR_WORD_CHARS, NAME_CHARS, UPLOAD_BYTES,
        UPLOADS_LIMIT_MAX,
    };
    use crate::router::method_name;
    use crate::routes::ROUTES;

    /// `validation::check_name` as a JSON Schema pattern: no control character (Unicode's
    /// `Cc`) or line separator (U+2028, U+2029), and one character that is neither those nor
    /// whitespace (ECMAScript's `\s`).
    const NAME_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F\u2028\u2029]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F\u2028\u2029]*$";

    fn parsed() -> Value {
        serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
    }

    #[test]
    fn openapi_json_is_the_document_of_the_route_table() {
        let generated = serde_json::to_string(&document(ROUTES)).expect("serializable");
        if generated == OPENAPI_JSON {
            return;
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        if std::env::var_os("GREETER_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, generated).expect("openapi.json is writable");
        } else {
            panic!(
                "{path} is out of date: run `GREETER_UPDATE_OPENAPI=1 cargo test -p greeter-core`"
            );
        }
    }

    #[test]
    fn is_an_openapi_3_1_document() {
        let document: utoipa::openapi::OpenApi =
            serde_json::from_str(OPENAPI_JSON).expect("openapi.json is an OpenAPI document");
        let json = serde_json::to_value(&document).expect("serializable");
        assert!(
            json["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1.")),
            "{}",
            json["openapi"]
        );
        assert_eq!(json["info"]["title"], "Greeter");
    }

    fn operations(document: &Value) -> BTreeSet<(String, String)> {
        let paths = document["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().expect("a path item").keys();
                methods.map(|method| (method.to_uppercase(), path.clone()))
            })
            .collect()
    }

    #[test]
    fn lists_exactly_the_routes_the_router_serves() {
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|route| {
                let path = (route.path)();
                (route.methods)()
                    .iter()
                    .map(move |m| (method_name(m).to_owned(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(operations(&parsed()), served);
        // And those are the routes of issues 2 and 4.
        let issue: BTreeSet<(String, String)> = [
            ("GET", "/"),
            ("GET", "/hello/{name}"),
            ("POST", "/api/greetings"),
            ("GET", "/api/greetings"),
            ("GET", "/api/greetings/{id}"),
            ("PUT", "/api/greetings/{id}"),
            ("DELETE", "/api/greetings/{id}"),
            ("GET", "/api/health"),
            ("GET", "/api/ready"),
            ("GET", "/api/mirror"),
            ("POST", "/api/upload-random"),
            ("GET", "/api/uploads"),
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
        ]
        .into_iter()
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .collect();
        assert_eq!(served, issue);
    }

    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    found.push(reference.clone());
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_to_a_schema() {
        let document = parsed();
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for reference in found {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .expect("a schema reference");
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{reference} is missing"
            );
        }
    }

    #[test]
    fn every_operation_documents_its_responses_and_errors() {
        let document = parsed();
        for (method, path) in operations(&document) {
            let operation = &document["paths"][&path][method.to_lowercase()];
            assert!(operation["operationId"].is_string(), "{method} {path}");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, response) in responses
                .iter()
                .filter(|(status, _)| status.as_str() >= "400")
            {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }

    #[test]
    fn the_error_schema_lists_every_code() {
        let codes = &parsed()["components"]["schemas"]["ErrorCode"]["enum"];
        assert_eq!(codes.as_array().map(Vec::len), Some(15), "{codes}");
        assert!(
            codes
                .as_array()
                .expect("codes")
                .contains(&Value::from("store_unavailable"))
        );
    }

    /// utoipa's attributes take only literals, so this keeps them equal to `limits`.
    #[test]
    fn schema_limits_are_the_limits_the_app_enforces() {
        let document = parsed();
        let input = &document["components"]["schemas"]["GreetingInput"]["properties"];
        assert_eq!(input["name"]["minLength"], *NAME_CHARS.start());
        assert_eq!(input["name"]["maxLength"], *NAME_CHARS.end());
        assert_eq!(input["name"]["pattern"], NAME_PATTERN);
        assert_eq!(input["message"]["maxLength"], MESSAGE_MAX_CHARS);
        let parameter = |path: &str, name: &str| {
            let item = &document["paths"][path];
            let operation = item.get("get").unwrap_or(&item["post"]);
            let parameters = operation["parameters"].as_array().expect("parameters");
            let found = parameters
                .iter()
                .find(|p| p["name"] == name)
                .expect("the parameter");
            found["schema"].clone()
        };
        let hello = parameter("/hello/{name}", "name");
        assert_eq!(
            (&hello["minLength"], &hello["maxLength"]),
            (&(*NAME_CHARS.start()).into(), &(*NAME_CHARS.end()).into())
        );
        assert_eq!(hello["pattern"], NAME_PATTERN);
        let word = parameter("/api/mirror", "word");
        assert_eq!(
            (&word["minLength"], &word["maxLength"]),
            (
                &(*MIRROR_WORD_CHARS.start()).into(),
                &(*MIRROR_WORD_CHARS.end()).into()
            )
        );
        let limit = parameter("/api/greetings", "limit");
        assert_eq!(
            (&limit["minimum"], &limit["maximum"]),
            (&1.into(), &LIST_LIMIT_MAX.into())
        );
        let cursor = parameter("/api/greetings", "cursor");
        assert_eq!(cursor["pattern"], crate::pagination::CURSOR_PATTERN);
        let bytes = parameter("/api/upload-random", "bytes");
        assert_eq!(
            (&bytes["minimum"], &bytes["maximum"]),
            (
                &(*UPLOAD_BYTES.start()).into(),
                &(*UPLOAD_BYTES.end()).into()
            )
        );
        let limit = parameter("/api/uploads", "limit");
        assert_eq!(
            (&limit["minimum"], &limit["maximum"]),
            (&1.into(), &UPLOADS_LIMIT_MAX.into())
        );
    }
}
