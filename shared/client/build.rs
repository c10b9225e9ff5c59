//! Generates the request and response types from `openapi.json`, the server's own
//! OpenAPI document (`strata-api openapi > shared/client/openapi.json`), so the client
//! cannot drift from the server: strata-tests fails when the file is not the server's.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=openapi.json");
    let text = std::fs::read_to_string("openapi.json").expect("read openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("openapi.json has components.schemas");

    let mut settings = typify::TypeSpaceSettings::default();
    settings.with_derive("PartialEq".to_string());
    let mut space = typify::TypeSpace::new(&settings);
    let defs = schemas.iter().map(|(name, schema)| {
        let schema: schemars::schema::Schema =
            serde_json::from_value(schema.clone()).unwrap_or_else(|e| panic!("schema {name}: {e}"));
        (name.clone(), schema)
    });
    space
        .add_ref_types(defs)
        .expect("typify converts the schemas");

    let file: syn::File = syn::parse2(space.to_stream()).expect("generated code parses");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("types.rs");
    std::fs::write(out, prettyplease::unparse(&file)).expect("write types.rs");
}
