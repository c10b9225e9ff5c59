//! Renders the OpenAPI document as one self-contained HTML page (inline CSS, no script,
//! nothing fetched from anywhere): operations in route-table order with their security,
//! parameters, bodies and responses, then the schemas.

use std::fmt::Write;

use serde_json::Value;

use crate::routes::RouteSpec;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
padding:0 1rem;color:#222;line-height:1.45}code{background:#f3f3f3;padding:0 .2em}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border:1px solid #ccc;\
padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f6f6f6}\
.op{border-top:2px solid #ddd;margin-top:2rem}.m{font-weight:bold;padding:.1em .4em;\
border-radius:3px;color:#fff;background:#555}.GET{background:#2a7}.POST{background:#27c}\
.PUT{background:#c82}.DELETE{background:#c33}a{color:#15c}";

const METHODS: &[&str] = &["get", "post", "put", "delete"];

/// The whole page.
pub fn render(doc: &Value, routes: &[RouteSpec]) -> String {
    let title = text(&doc["info"]["title"]);
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t} API</title><style>{STYLE}</style></head><body>\
         <h1>{t} API <small>{v}</small></h1>",
        t = esc(&title),
        v = esc(&text(&doc["info"]["version"])),
    );
    out.push_str(&prose(&text(&doc["info"]["description"])));
    let _ = write!(
        out,
        "<p>Machine-readable: <a href=\"/api/v1/openapi.json\">openapi.json</a> \
         (OpenAPI {}).</p>",
        esc(&text(&doc["openapi"]))
    );
    render_security_schemes(&mut out, doc);
    let ops = operations(doc, routes);
    out.push_str("<h2>Operations</h2><ul>");
    for (method, path, op) in &ops {
        let _ = write!(
            out,
            "<li><a href=\"#{a}\"><span class=\"m {M}\">{M}</span> <code>{p}</code></a> {s}</li>",
            a = anchor(method, path),
            M = method.to_uppercase(),
            p = esc(path),
            s = esc(&text(&op["summary"])),
        );
    }
    out.push_str("</ul>");
    for (method, path, op) in &ops {
        render_operation(&mut out, doc, method, path, op);
    }
    render_schemas(&mut out, doc);
    out.push_str("</body></html>");
    out
}

/// Operations in route-table order, then any the table lacks (there should be none).
fn operations<'a>(doc: &'a Value, routes: &[RouteSpec]) -> Vec<(String, String, &'a Value)> {
    let mut seen = Vec::new();
    let push = |method: &str, path: &str, seen: &mut Vec<(String, String, &'a Value)>| {
        let method = method.to_lowercase();
        let op = &doc["paths"][path][&method];
        if op.is_object() && !seen.iter().any(|(m, p, _)| *m == method && p == path) {
            seen.push((method, path.to_string(), op));
        }
    };
    for r in routes {
        push(r.method, r.path, &mut seen);
    }
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for m in METHODS {
                if item.get(*m).is_some() {
                    push(m, path, &mut seen);
                }
            }
        }
    }
    seen
}

fn render_security_schemes(out: &mut String, doc: &Value) {
    let Some(schemes) = doc["components"]["securitySchemes"].as_object() else {
        return;
    };
    out.push_str(
        "<h2>Authentication</h2><table><tr><th>Name</th><th>Kind</th><th>Description</th></tr>",
    );
    for (name, s) in schemes {
        let kind = match text(&s["type"]).as_str() {
            "http" => format!("HTTP {}", text(&s["scheme"])),
            "apiKey" => format!(
                "{} parameter <code>{}</code>",
                esc(&text(&s["in"])),
                esc(&text(&s["name"]))
            ),
            other => esc(other),
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{kind}</td><td>{}</td></tr>",
            esc(name),
            inline(&text(&s["description"]))
        );
    }
    out.push_str("</table>");
}

fn render_operation(out: &mut String, doc: &Value, method: &str, path: &str, op: &Value) {
    let _ = write!(
        out,
        "<section class=\"op\" id=\"{a}\"><h3><span class=\"m {M}\">{M}</span> <code>{p}</code></h3>",
        a = anchor(method, path),
        M = method.to_uppercase(),
        p = esc(path),
    );
    out.push_str(&prose(&text(&op["summary"])));
    out.push_str(&prose(&text(&op["description"])));
    let security: Vec<String> = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|req| req.as_object())
        .flat_map(|req| req.keys().map(|k| format!("<code>{}</code>", esc(k))))
        .collect();
    let _ = write!(
        out,
        "<p><b>Authentication:</b> {}</p>",
        if security.is_empty() {
            "none".to_string()
        } else {
            security.join(" or ")
        }
    );
    render_parameters(out, op);
    if let Some(content) = op["requestBody"]["content"].as_object() {
        out.push_str("<p><b>Request body</b>");
        if op["requestBody"]["required"].as_bool() == Some(true) {
            out.push_str(" (required)");
        }
        out.push_str(":</p><ul>");
        for (ctype, media) in content {
            let _ = write!(
                out,
                "<li><code>{}</code>: {}</li>",
                esc(ctype),
                type_label(&media["schema"])
            );
        }
        out.push_str("</ul>");
    }
    render_responses(out, doc, op);
    out.push_str("</section>");
}

fn render_parameters(out: &mut String, op: &Value) {
    let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) else {
        return;
    };
    out.push_str("<p><b>Parameters</b></p><table><tr><th>Name</th><th>In</th><th>Type</th><th>Required</th><th>Description</th></tr>");
    for p in params {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&p["name"])),
            esc(&text(&p["in"])),
            type_label(&p["schema"]),
            if p["required"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            inline(&text(&p["description"])),
        );
    }
    out.push_str("</table>");
}

fn render_responses(out: &mut String, doc: &Value, op: &Value) {
    let Some(responses) = op["responses"].as_object() else {
        return;
    };
    out.push_str(
        "<p><b>Responses</b></p><table><tr><th>Status</th><th>Description</th><th>Body</th></tr>",
    );
    for (status, res) in responses {
        let res = resolve(doc, res);
        let body: Vec<String> = res["content"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(ctype, media)| {
                format!(
                    "<code>{}</code> {}",
                    esc(ctype),
                    type_label(&media["schema"])
                )
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(status),
            inline(&text(&res["description"])),
            body.join("<br>")
        );
    }
    out.push_str("</table>");
}

fn render_schemas(out: &mut String, doc: &Value) {
    let Some(schemas) = doc["components"]["schemas"].as_object() else {
        return;
    };
    out.push_str("<h2>Schemas</h2>");
    for (name, schema) in schemas {
        let _ = write!(
            out,
            "<section id=\"schema-{n}\"><h3>{n}</h3>",
            n = esc(name)
        );
        out.push_str(&prose(&text(&schema["description"])));
        render_schema_body(out, schema);
        out.push_str("</section>");
    }
}

fn render_schema_body(out: &mut String, schema: &Value) {
    if let Some(parts) = schema["allOf"].as_array() {
        out.push_str("<p>All of:</p>");
        for part in parts {
            if part.get("$ref").is_some() {
                let _ = write!(out, "<p>{}</p>", type_label(part));
            } else {
                render_schema_body(out, part);
            }
        }
        return;
    }
    let Some(props) = schema["properties"].as_object() else {
        let _ = write!(out, "<p>{}</p>", type_label(schema));
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    out.push_str(
        "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>",
    );
    for (field, s) in props {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(field),
            type_label(s),
            if required.contains(&field.as_str()) {
                "yes"
            } else {
                "no"
            },
            inline(&text(&s["description"])),
        );
    }
    out.push_str("</table>");
    if schema["additionalProperties"] == Value::Bool(false) {
        out.push_str("<p>No other fields are accepted.</p>");
    }
}

/// A short description of a schema, as HTML: `string (date-time)`, `array of <a>X</a>`…
fn type_label(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{n}\">{n}</a>", n = esc(name));
    }
    for (key, sep) in [("allOf", " &amp; "), ("oneOf", " | "), ("anyOf", " | ")] {
        if let Some(parts) = s[key].as_array() {
            return parts.iter().map(type_label).collect::<Vec<_>>().join(sep);
        }
    }
    let types: Vec<String> = match &s["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().map(text).collect(),
        _ => vec![],
    };
    let mut label = types
        .iter()
        .map(|t| match t.as_str() {
            "array" => format!("array of {}", type_label(&s["items"])),
            other => esc(other),
        })
        .collect::<Vec<_>>()
        .join(" or ");
    if label.is_empty() {
        label = "any".into();
    }
    if let Some(f) = s["format"].as_str() {
        let _ = write!(label, " ({})", esc(f));
    }
    if let Some(values) = s["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&text(v))))
            .collect();
        let _ = write!(label, ": one of {}", values.join(", "));
    }
    label
}

/// Follows a `#/components/responses/…` reference.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/responses/"))
    {
        Some(name) => &doc["components"]["responses"][name],
        None => v,
    }
}

fn anchor(method: &str, path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("op-{method}{slug}")
}

/// A JSON value as plain text (strings without their quotes).
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text with `code` spans.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(s).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Paragraphs (blank-line separated) of [`inline`] text.
fn prose(s: &str) -> String {
    s.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>", inline(p.trim())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_renders_code_spans() {
        assert_eq!(inline("a `<b>` c"), "a <code>&lt;b&gt;</code> c");
    }

    #[test]
    fn labels_nullable_arrays_and_refs() {
        let s = serde_json::json!({"type": ["array", "null"], "items": {"$ref": "#/components/schemas/X"}});
        assert_eq!(
            type_label(&s),
            "array of <a href=\"#schema-X\">X</a> or null"
        );
    }
}
