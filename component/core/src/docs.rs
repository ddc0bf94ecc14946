//! `GET /docs`: Swagger UI for `/openapi.json`, as FastAPI serves it.
//!
//! The page loads a pinned swagger-ui-dist from the jsDelivr CDN, with Subresource Integrity
//! hashes so a changed file is refused. To upgrade: `npm pack swagger-ui-dist@<version>`, then
//! `openssl dgst -sha384 -binary <file> | openssl base64 -A` for both files.

pub const SWAGGER_UI_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Greeter API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui.css"
  integrity="sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I"
  crossorigin="anonymous">
</head>
<body>
<div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0/swagger-ui-bundle.js"
  integrity="sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9"
  crossorigin="anonymous"></script>
<script>
SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
});
</script>
</body>
</html>
"##;
