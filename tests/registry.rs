//! `glance-registry` end to end: the real binary on an ephemeral port, every route, filter,
//! sort and error of spec §8 over HTTP.

mod common;

use common::{Client, REGISTRY_CONF, Server};
use serde_json::{Value, json};

fn registry() -> (Server, Client) {
    let server = Server::start("glance-registry", REGISTRY_CONF, true);
    let client = Client::new(&server.base);
    (server, client)
}

fn tenant(t: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-Auth-Token", "tok".to_string()),
        ("X-Identity-Status", "Confirmed".to_string()),
        ("X-Tenant", t.to_string()),
        ("X-User", format!("user-{t}")),
        ("X-Roles", "member".to_string()),
    ]
}

fn as_refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn create(c: &Client, image: Value) -> Value {
    let r = c.json("POST", "/images", &json!({ "image": image }));
    assert_status!(r, 200);
    r.json()["image"].clone()
}

fn create_as(c: &Client, who: &[(&'static str, String)], image: Value) -> Value {
    let body = json!({ "image": image }).to_string();
    let mut h = as_refs(who);
    h.push(("Content-Type", "application/json"));
    let r = c.request("POST", "/images", &h, Some(body.as_bytes()));
    assert_status!(r, 200);
    r.json()["image"].clone()
}

fn ids(reply: &common::Reply) -> Vec<String> {
    reply.json()["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn names(reply: &common::Reply) -> Vec<String> {
    reply.json()["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn empty_listing_and_crud() {
    let (_s, c) = registry();
    let r = c.get("/images");
    assert_status!(r, 200);
    assert_eq!(r.json(), json!({"images": []}));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=UTF-8")
    );

    let img = create(
        &c,
        json!({"name": "one", "disk_format": "qcow2", "container_format": "bare",
               "is_public": true, "size": 5, "properties": {"distro": "debian"}}),
    );
    let id = img["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(img["status"], "active", "registry default status");
    assert_eq!(img["updated_at"], Value::Null);
    assert_eq!(img["properties"]["distro"], "debian");
    assert!(
        img["created_at"]
            .as_str()
            .is_some_and(|t| !t.ends_with('Z'))
    );

    let r = c.get(&format!("/images/{id}"));
    assert_status!(r, 200);
    assert_eq!(r.json()["image"]["name"], "one");

    // Index is brief, detail full (with location).
    let brief = c.get("/images").json();
    let keys: Vec<&str> = brief["images"][0]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut keys = keys;
    keys.sort();
    assert_eq!(
        keys,
        [
            "checksum",
            "container_format",
            "disk_format",
            "id",
            "name",
            "size"
        ]
    );
    let detail = c.get("/images/detail").json();
    assert!(detail["images"][0].get("location").is_some());
    assert!(detail["images"][0].get("properties").is_some());

    // Update: merge by default, purge with the header.
    let r = c.json(
        "PUT",
        &format!("/images/{id}"),
        &json!({"image": {"name": "renamed", "properties": {"arch": "x86_64"}}}),
    );
    assert_status!(r, 200);
    let img = r.json()["image"].clone();
    assert_eq!(img["name"], "renamed");
    assert_eq!(img["properties"]["distro"], "debian");
    assert!(img["updated_at"].is_string());
    let body = json!({"image": {"properties": {"only": "this"}}}).to_string();
    let r = c.request(
        "PUT",
        &format!("/images/{id}"),
        &[
            ("Content-Type", "application/json"),
            ("X-Glance-Registry-Purge-Props", "true"),
        ],
        Some(body.as_bytes()),
    );
    assert_status!(r, 200);
    assert_eq!(r.json()["image"]["properties"], json!({"only": "this"}));

    // Delete answers 200 null; afterwards 404 everywhere.
    let r = c.request("DELETE", &format!("/images/{id}"), &[], None);
    assert_status!(r, 200);
    assert_eq!(r.text(), "null");
    assert_status!(c.get(&format!("/images/{id}")), 404);
    assert_status!(
        c.request("DELETE", &format!("/images/{id}"), &[], None),
        404
    );
    assert_eq!(ids(&c.get("/images")), Vec::<String>::new());
}

#[test]
fn validation_errors_name_the_field() {
    let (_s, c) = registry();
    for (image, needle) in [
        (json!({"disk_format": "floppy"}), "Invalid disk format"),
        (
            json!({"container_format": "zip"}),
            "Invalid container format",
        ),
        (json!({"disk_format": "ami"}), "Invalid mix"),
        (json!({"status": "dancing"}), "Invalid image status"),
        (json!({"size": -1}), "size"),
        (json!({"size": "12abc"}), "size"),
        (json!({"min_ram": "x"}), "min_ram"),
        (json!({"name": 12}), "name"),
        (json!({"id": "a b"}), "id"),
        (json!({"properties": "x"}), "properties"),
    ] {
        let r = c.json("POST", "/images", &json!({ "image": image }));
        assert_status!(r, 400);
        assert!(r.text().contains(needle), "{needle}: {}", r.text());
    }
    // Nothing half-written.
    assert_eq!(ids(&c.get("/images?is_public=none")), Vec::<String>::new());

    let r = c.request(
        "POST",
        "/images",
        &[("Content-Type", "application/json")],
        Some(b"{not json"),
    );
    assert_status!(r, 400);
    assert!(r.text().contains("JSON"), "{}", r.text());
    let r = c.json("POST", "/images", &json!({"nope": {}}));
    assert_status!(r, 400);
    assert!(r.text().contains("image"));
    let r = c.request("POST", "/images", &[], None);
    assert_status!(r, 400);

    // Update validation.
    let img = create(&c, json!({"name": "x", "is_public": true}));
    let id = img["id"].as_str().unwrap_or_default();
    let r = c.json(
        "PUT",
        &format!("/images/{id}"),
        &json!({"image": {"disk_format": "bad"}}),
    );
    assert_status!(r, 400);
    assert!(r.text().contains("Failed to update image metadata"));
    let r = c.json(
        "PUT",
        "/images/nonexistent",
        &json!({"image": {"name": "y"}}),
    );
    assert_status!(r, 404);
}

#[test]
fn duplicate_and_client_ids() {
    let (_s, c) = registry();
    let img = create(&c, json!({"id": "my-image.1", "name": "x"}));
    assert_eq!(img["id"], "my-image.1");
    let r = c.json("POST", "/images", &json!({"image": {"id": "my-image.1"}}));
    assert_status!(r, 409);
    assert!(r.text().contains("already exists"));
    // Still a duplicate after deletion (soft-deleted rows keep their id).
    assert_status!(c.request("DELETE", "/images/my-image.1", &[], None), 200);
    let r = c.json("POST", "/images", &json!({"image": {"id": "my-image.1"}}));
    assert_status!(r, 409);
    assert_status!(c.get("/images/does-not-exist"), 404);
    assert_status!(c.get("/images/%2e%2e"), 404);
}

#[test]
fn filters_sorting_and_paging() {
    let (_s, c) = registry();
    let mk = |name: &str, size: u64, extra: Value| {
        let mut v = json!({"name": name, "size": size, "is_public": true,
                           "disk_format": "raw", "container_format": "bare"});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                o.insert(k.clone(), val.clone());
            }
        }
        create(&c, v)["id"].as_str().unwrap_or_default().to_string()
    };
    let i1 = mk("Image1", 19, json!({"properties": {"os": "linux"}}));
    let i2 = mk("ASDF", 2, json!({"disk_format": "qcow2", "min_ram": 512}));
    let i3 = mk("XYZ", 5, json!({"container_format": "ovf"}));

    // Newest first by default; limit and marker.
    assert_eq!(
        ids(&c.get("/images")),
        vec![i3.clone(), i2.clone(), i1.clone()]
    );
    assert_eq!(ids(&c.get("/images?limit=2")), vec![i3.clone(), i2.clone()]);
    assert_eq!(
        ids(&c.get(&format!("/images?marker={i3}"))),
        vec![i2.clone(), i1.clone()]
    );
    assert_eq!(
        ids(&c.get(&format!("/images?limit=1&marker={i2}"))),
        vec![i1.clone()]
    );
    assert_eq!(ids(&c.get("/images?limit=0")), Vec::<String>::new());

    // Sorting.
    assert_eq!(
        names(&c.get("/images?sort_key=name&sort_dir=asc")),
        ["ASDF", "Image1", "XYZ"]
    );
    assert_eq!(
        ids(&c.get(&format!("/images?sort_key=size&sort_dir=desc&marker={i1}"))),
        vec![i3.clone(), i2.clone()]
    );
    assert_eq!(
        ids(&c.get("/images/detail?sort_key=size&sort_dir=asc")),
        vec![i2.clone(), i3.clone(), i1.clone()]
    );

    // Filters.
    assert_eq!(ids(&c.get("/images?name=ASDF")), vec![i2.clone()]);
    assert_eq!(ids(&c.get("/images?disk_format=qcow2")), vec![i2.clone()]);
    assert_eq!(
        ids(&c.get("/images?container_format=ovf")),
        vec![i3.clone()]
    );
    assert_eq!(ids(&c.get("/images?min_ram=512")), vec![i2.clone()]);
    assert_eq!(
        ids(&c.get("/images?size_min=5")),
        vec![i3.clone(), i1.clone()]
    );
    assert_eq!(
        ids(&c.get("/images?size_max=5")),
        vec![i3.clone(), i2.clone()]
    );
    assert_eq!(
        ids(&c.get("/images?size_min=3&size_max=10")),
        vec![i3.clone()]
    );
    assert_eq!(ids(&c.get("/images?property-os=linux")), vec![i1.clone()]);
    assert_eq!(
        ids(&c.get("/images?status=active&name=XYZ")),
        vec![i3.clone()]
    );
    assert_eq!(ids(&c.get("/images?unknown=1")).len(), 3);

    // A removed property no longer matches (Diablo bug fixed).
    let r = c.json(
        "PUT",
        &format!("/images/{i1}"),
        &json!({"image": {"properties": {}}}),
    );
    assert_status!(r, 200);
    let body = json!({"image": {}}).to_string();
    let r = c.request(
        "PUT",
        &format!("/images/{i1}"),
        &[
            ("Content-Type", "application/json"),
            ("X-Glance-Registry-Purge-Props", "true"),
        ],
        Some(body.as_bytes()),
    );
    assert_status!(r, 200);
    assert_eq!(
        ids(&c.get("/images?property-os=linux")),
        Vec::<String>::new()
    );

    // Killed images are never listed, not even by status. (Only a queued or saving image
    // can be killed: the registry refuses illegal transitions such as active -> killed.)
    let i4 = mk("Doomed", 1, json!({"status": "queued"}));
    let r = c.json(
        "PUT",
        &format!("/images/{i4}"),
        &json!({"image": {"status": "killed"}}),
    );
    assert_status!(r, 200);
    assert_eq!(ids(&c.get("/images?status=killed")), Vec::<String>::new());
    assert!(!ids(&c.get("/images?limit=100")).contains(&i4));
    assert_status!(c.get(&format!("/images/{i4}")), 200);

    // Changes-since.
    assert_eq!(
        ids(&c.get("/images?changes-since=2000-01-01T00:00:00")).len(),
        3
    );
    assert_eq!(
        ids(&c.get("/images?changes-since=2999-01-01T00:00:00")).len(),
        0
    );
}

#[test]
fn bad_listing_parameters_are_400() {
    let (_s, c) = registry();
    create(&c, json!({"name": "a", "is_public": true}));
    for (q, needle) in [
        ("sort_key=owner", "sort_key"),
        ("sort_dir=sideways", "sort_dir"),
        ("limit=-3", "limit"),
        ("limit=ten", "limit"),
        ("marker=nonexistent", "marker"),
        ("size_min=big", "size_min"),
        ("is_public=perhaps", "is_public"),
        ("changes-since=someday", "changes-since"),
        ("changes-since=300000000000-01-01", "changes-since"),
        ("changes-since=2011-01-01T24:00:00", "changes-since"),
    ] {
        let r = c.get(&format!("/images?{q}"));
        assert_status!(r, 400);
        assert!(r.text().contains(needle), "{q}: {}", r.text());
    }
}

#[test]
fn page_size_default_and_cap() {
    let server = Server::start(
        "glance-registry",
        &format!("{REGISTRY_CONF}limit_param_default = 2\napi_limit_max = 3\n"),
        true,
    );
    let c = Client::new(&server.base);
    for i in 0..5 {
        create(&c, json!({"name": format!("n{i}"), "is_public": true}));
    }
    assert_eq!(ids(&c.get("/images")).len(), 2);
    assert_eq!(ids(&c.get("/images?limit=100")).len(), 3);
    // Paging through everything visits each image once.
    let mut seen = Vec::new();
    let mut marker = String::new();
    for _ in 0..10 {
        let q = if marker.is_empty() {
            "/images?limit=2".to_string()
        } else {
            format!("/images?limit=2&marker={marker}")
        };
        let page = ids(&c.get(&q));
        if page.is_empty() {
            break;
        }
        marker = page.last().cloned().unwrap_or_default();
        seen.extend(page);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

#[test]
fn visibility_and_ownership() {
    let (_s, c) = registry();
    let a = tenant("A");
    let b = tenant("B");
    let private_a = create_as(
        &c,
        &a,
        json!({"name": "a-private", "owner": "someone-else"}),
    );
    assert_eq!(
        private_a["owner"], "A",
        "non-admins cannot choose the owner"
    );
    let pid = private_a["id"].as_str().unwrap_or_default().to_string();
    let public_b = create_as(&c, &b, json!({"name": "b-public", "is_public": true}));
    let bid = public_b["id"].as_str().unwrap_or_default().to_string();
    let nobody = create(&c, json!({"name": "no-owner"}));
    assert_eq!(nobody["owner"], Value::Null);
    let nid = nobody["id"].as_str().unwrap_or_default().to_string();

    let get =
        |who: &[(&'static str, String)], path: &str| c.request("GET", path, &as_refs(who), None);
    // A sees its private image and B's public one; B does not see A's private one.
    assert_eq!(ids(&get(&a, "/images")).len(), 2);
    assert_eq!(ids(&get(&b, "/images")), vec![bid.clone()]);
    assert_status!(get(&b, &format!("/images/{pid}")), 404);
    assert_status!(get(&b, &format!("/images/{nid}")), 200);
    // Non-admin is_public=false is ignored.
    assert_eq!(ids(&get(&b, "/images?is_public=false")), vec![bid.clone()]);
    // The anonymous admin sees only public images by default, all with is_public=none.
    assert_eq!(ids(&c.get("/images")), vec![bid.clone()]);
    assert_eq!(ids(&c.get("/images?is_public=false")).len(), 2);
    assert_eq!(ids(&c.get("/images?is_public=none")).len(), 3);

    // B cannot change or delete A's image (404, not 403).
    let body = json!({"image": {"name": "hijack"}}).to_string();
    let mut hb = as_refs(&b);
    hb.push(("Content-Type", "application/json"));
    assert_status!(
        c.request("PUT", &format!("/images/{pid}"), &hb, Some(body.as_bytes())),
        404
    );
    assert_status!(
        c.request("DELETE", &format!("/images/{pid}"), &as_refs(&b), None),
        404
    );
    // Nor the null-owner image.
    assert_status!(
        c.request("DELETE", &format!("/images/{nid}"), &as_refs(&b), None),
        404
    );

    // Sharing: A adds B; B now sees it.
    let r = c.request(
        "PUT",
        &format!("/images/{pid}/members/B"),
        &as_refs(&a),
        None,
    );
    assert_status!(r, 204);
    assert_status!(get(&b, &format!("/images/{pid}")), 200);
    assert_eq!(ids(&get(&b, "/images")).len(), 2);
    let shared = c.get("/shared-images/B").json();
    assert_eq!(shared["shared_images"][0]["image_id"], pid.as_str());
    assert_eq!(shared["shared_images"][0]["can_share"], false);
    // B without can_share cannot share further.
    let r = c.request(
        "PUT",
        &format!("/images/{pid}/members/C"),
        &as_refs(&b),
        None,
    );
    assert_status!(r, 403);
}

#[test]
fn members_routes() {
    let (_s, c) = registry();
    let a = tenant("A");
    let img = create_as(&c, &a, json!({"name": "shared"}));
    let id = img["id"].as_str().unwrap_or_default().to_string();
    let ha = as_refs(&a);
    let put = |path: &str, body: Option<Value>| {
        let b = body.map(|v| v.to_string());
        let mut h = ha.clone();
        h.push(("Content-Type", "application/json"));
        c.request("PUT", path, &h, b.as_deref().map(str::as_bytes))
    };
    // Diablo's two fields of each membership (the registry API also carries the v2
    // status and times, checked below).
    let full = || {
        c.request("GET", &format!("/images/{id}/members"), &ha, None)
            .json()
    };
    let members = || {
        let list: Vec<serde_json::Value> = full()["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| json!({"member_id": m["member_id"], "can_share": m["can_share"]}))
            .collect();
        json!({ "members": list })
    };

    assert_eq!(members(), json!({"members": []}));
    assert_status!(put(&format!("/images/{id}/members/t1"), None), 204);
    assert_status!(
        put(
            &format!("/images/{id}/members/t2"),
            Some(json!({"member": {"can_share": true}}))
        ),
        204
    );
    let m = members();
    assert_eq!(m["members"].as_array().map(Vec::len), Some(2));
    // Re-adding without a body keeps can_share.
    assert_status!(put(&format!("/images/{id}/members/t2"), None), 204);
    let t2 = members()["members"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["member_id"] == "t2").cloned())
        .unwrap_or_default();
    assert_eq!(t2["can_share"], true);

    // Delete, then re-add without body: revived (Diablo bug fixed).
    let r = c.request("DELETE", &format!("/images/{id}/members/t1"), &ha, None);
    assert_status!(r, 204);
    let r = c.request("DELETE", &format!("/images/{id}/members/never"), &ha, None);
    assert_status!(r, 204);
    assert_eq!(members()["members"].as_array().map(Vec::len), Some(1));
    assert_status!(put(&format!("/images/{id}/members/t1"), None), 204);
    assert_eq!(members()["members"].as_array().map(Vec::len), Some(2));

    // Replace: three body forms.
    assert_status!(
        put(
            &format!("/images/{id}/members"),
            Some(json!({"memberships": [{"member_id": "t3", "can_share": true}]}))
        ),
        204
    );
    assert_eq!(
        members(),
        json!({"members": [{"member_id": "t3", "can_share": true}]})
    );
    assert_status!(
        put(
            &format!("/images/{id}/members"),
            Some(json!([{"member_id": "t4"}]))
        ),
        204
    );
    assert_eq!(
        members(),
        json!({"members": [{"member_id": "t4", "can_share": false}]})
    );
    assert_status!(
        put(
            &format!("/images/{id}/members"),
            Some(json!({"member_id": "t5"}))
        ),
        204
    );
    assert_eq!(members()["members"][0]["member_id"], "t5");
    assert_eq!(full()["members"][0]["status"], "pending");
    assert!(full()["members"][0]["created_at"].is_string());
    assert_status!(
        put(
            &format!("/images/{id}/members"),
            Some(json!({"memberships": []}))
        ),
        204
    );
    assert_eq!(members(), json!({"members": []}));
    // Bad bodies.
    assert_status!(put(&format!("/images/{id}/members"), None), 400);
    assert_status!(
        put(&format!("/images/{id}/members"), Some(json!({"x": 1}))),
        400
    );
    assert_status!(
        put(
            &format!("/images/{id}/members/t1"),
            Some(json!({"member": {"can_share": "yes"}}))
        ),
        400
    );
    // No tenant on a member mutation → 401; unknown image → 404.
    let r = c.request("PUT", &format!("/images/{id}/members/t9"), &[], None);
    assert_status!(r, 401);
    assert_status!(put("/images/nope/members/t1", None), 404);
    assert_status!(c.get("/images/nope/members"), 404);
}

#[test]
fn methods_and_unknown_routes() {
    let (_s, c) = registry();
    let r = c.request("PATCH", "/images", &[], None);
    assert_status!(r, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("POST")));
    assert_status!(c.request("POST", "/images/detail", &[], None), 405);
    assert_status!(c.request("POST", "/images/x", &[], None), 405);
    assert_status!(c.request("DELETE", "/images/x/members", &[], None), 405);
    assert_status!(c.get("/nothing/here"), 404);
    assert_status!(c.request("HEAD", "/images", &[], None), 200);
}

#[test]
fn oversized_json_body_is_413() {
    use std::io::{Read, Write};
    let (s, _c) = registry();
    // The server answers from the declared length, without reading the body.
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap_or_else(|e| panic!("{e}"));
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok();
    let head = "POST /images HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 2097152\r\n\r\n";
    sock.write_all(head.as_bytes()).ok();
    let mut reply = Vec::new();
    let _ = sock.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
}

#[test]
fn malformed_chunked_json_body_is_400() {
    use std::io::{Read, Write};
    let (s, _c) = registry();
    // A bare LF in the chunk framing: once reported as 413 "too large" (the same io error
    // kind as an oversized body); it is a malformed request.
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap_or_else(|e| panic!("{e}"));
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok();
    let body = r#"{"image": {"name": "x"}}"#;
    let wire = format!(
        "POST /images HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    sock.write_all(wire.as_bytes()).ok();
    let mut reply = Vec::new();
    let _ = sock.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("must end with CRLF"), "{reply}");
}

#[test]
fn refuses_an_unmigrated_database() {
    let dir = common::tempdir();
    let conf = common::write_config(dir.path(), "glance-registry", REGISTRY_CONF);
    let err = Server::spawn("glance-registry", dir.path(), &conf).err();
    let (status, stderr) = err.unwrap_or_else(|| panic!("started on an empty database"));
    assert!(status.is_some_and(|s| !s.success()));
    assert!(stderr.contains("db_sync"), "{stderr}");
    // With db_auto_create it migrates and starts.
    let conf = common::write_config(
        dir.path(),
        "glance-registry",
        &format!("{REGISTRY_CONF}db_auto_create = True\n"),
    );
    let s = Server::spawn("glance-registry", dir.path(), &conf);
    assert!(s.is_ok(), "did not start with db_auto_create");
}

#[test]
fn sigterm_stops_cleanly() {
    let (mut s, c) = registry();
    assert_status!(c.get("/images"), 200);
    let status = s.stop();
    assert!(
        status.is_some_and(|st| st.success()),
        "exit status {status:?}"
    );
}
