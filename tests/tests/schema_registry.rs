#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! The schema registry speaks the Confluent REST API: register, look up by id and by
//! subject/version, and refuse an incompatible schema under BACKWARD.

use serde_json::{Value, json};
use vigil_test_support::{schema_registry_url, unique_name};

const CT: &str = "application/vnd.schemaregistry.v1+json";

fn v1() -> String {
    json!({"type": "record", "name": "Probe", "namespace": "io.vigil.test",
           "fields": [{"name": "id", "type": "string"}]})
    .to_string()
}

async fn register(client: &reqwest::Client, subject: &str, schema: &str) -> reqwest::Response {
    client
        .post(format!(
            "{}/subjects/{subject}/versions",
            schema_registry_url()
        ))
        .header("content-type", CT)
        .json(&json!({ "schema": schema }))
        .send()
        .await
        .expect("registry reachable")
}

#[tokio::test]
async fn register_lookup_and_backward_compatibility() {
    let client = reqwest::Client::new();
    let base = schema_registry_url();
    let subject = format!("{}-value", unique_name("e2e-sr"));

    let resp = register(&client, &subject, &v1()).await;
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");

    // By id.
    let by_id: Value = client
        .get(format!("{base}/schemas/ids/{id}"))
        .send()
        .await
        .expect("get by id")
        .json()
        .await
        .expect("json");
    let stored: Value =
        serde_json::from_str(by_id["schema"].as_str().expect("schema")).expect("avro json");
    assert_eq!(stored["name"], "Probe");

    // By subject and version, and `latest`.
    for version in ["1", "latest"] {
        let v: Value = client
            .get(format!("{base}/subjects/{subject}/versions/{version}"))
            .send()
            .await
            .expect("get version")
            .json()
            .await
            .expect("json");
        assert_eq!(v["id"].as_i64(), Some(id));
        assert_eq!(v["version"].as_i64(), Some(1));
        assert_eq!(v["subject"], subject.as_str());
    }

    // Registering the same schema again returns the same id and no new version.
    let again = register(&client, &subject, &v1())
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(again["id"].as_i64(), Some(id));

    // A new required field without a default cannot read old data: refused under BACKWARD.
    let breaking = json!({"type": "record", "name": "Probe", "namespace": "io.vigil.test",
        "fields": [{"name": "id", "type": "string"}, {"name": "must", "type": "long"}]})
    .to_string();
    let resp = register(&client, &subject, &breaking).await;
    assert_eq!(resp.status(), 409, "incompatible schema must be refused");
    let body: Value = resp.json().await.expect("error json");
    assert_eq!(body["error_code"].as_i64(), Some(409));

    // An optional field with a default is a compatible evolution.
    let evolved = json!({"type": "record", "name": "Probe", "namespace": "io.vigil.test",
        "fields": [{"name": "id", "type": "string"},
                   {"name": "note", "type": ["null", "string"], "default": null}]})
    .to_string();
    let resp = register(&client, &subject, &evolved).await;
    assert_eq!(resp.status(), 200);
    let id2 = resp.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    assert_ne!(id2, id);
    let versions: Vec<i64> = client
        .get(format!("{base}/subjects/{subject}/versions"))
        .send()
        .await
        .expect("versions")
        .json()
        .await
        .expect("json");
    assert_eq!(versions, vec![1, 2]);

    // Unknown ids are a typed 404.
    let resp = client
        .get(format!("{base}/schemas/ids/2147483000"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error_code"].as_i64(), Some(40403));
}

#[tokio::test]
async fn event_schema_evolves_backward_and_unknown_ids_are_typed() {
    use vigil_schemas::{AvroRecord, RegistryError, SchemaId, SchemaRegistry, VerificationEvent};
    let registry = SchemaRegistry::new(&schema_registry_url()).expect("registry client");
    let subject = format!("{}-value", unique_name("e2e-evolve"));
    let v1 = registry
        .register(&subject, VerificationEvent::SCHEMA_JSON)
        .await
        .expect("register v1");
    let v2_json = include_str!("../../schemas/testdata/verification_event_v2.avsc");
    assert!(
        registry
            .is_compatible(&subject, v2_json)
            .await
            .expect("compatibility check"),
        "a v2 adding an optional field passes BACKWARD"
    );
    let v2 = registry
        .register(&subject, v2_json)
        .await
        .expect("register v2");
    assert_ne!(v1, v2);
    // A reader on v1 gets v2's schema by id from the registry and decodes through resolution
    // (the pure decode test lives in vigil-schemas).
    let writer = registry.schema_by_id(v2).await.expect("v2 by id");
    assert_eq!(writer.id(), v2);

    match registry.schema_by_id(SchemaId(2_000_000_000)).await {
        Err(RegistryError::UnknownSchemaId(id)) => assert_eq!(id, SchemaId(2_000_000_000)),
        other => panic!("unknown id must be a typed error, got {other:?}"),
    }
}
