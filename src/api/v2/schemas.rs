//! `/v2/schemas/…`: JSON schemas of what v2 serves. Clients (python-glanceclient) build
//! their models from these and validate what they send and receive against them, so they
//! describe exactly the fields of [`super::repr`], with this server's formats and ids.

use serde_json::{Value, json};

use super::repr;
use crate::api::ApiApp;
use crate::error::{Error, Result};
use crate::http::Response;
use crate::image::{CONTAINER_FORMATS, Status};
use crate::registry::MemberStatus;

/// Serves one schema by name.
pub fn serve(app: &ApiApp, name: &str) -> Result<Response> {
    let schema = match name {
        "image" => image_schema(app),
        "images" => images_schema(app),
        "member" => member_schema(),
        "members" => members_schema(),
        _ => {
            return Err(Error::not_found(format!(
                "The resource '/v2/schemas/{name}' could not be found"
            )));
        }
    };
    Ok(Response::json(200, &schema))
}

/// Ids as [`crate::image::ImageId`] accepts them.
const ID_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$";

fn nullable_enum(values: impl IntoIterator<Item = String>) -> Value {
    let mut list: Vec<Value> = vec![Value::Null];
    list.extend(values.into_iter().map(Value::from));
    Value::from(list)
}

/// The schema of one image: every base attribute [`repr::image`] serves (`direct_url` and
/// `locations` are described always, and served only when configured), additional
/// properties as strings.
pub fn image_schema(app: &ApiApp) -> Value {
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let ro_string =
        |desc: &str| json!({"type": ["null", "string"], "readOnly": true, "description": desc});
    let mut props = json!({
        "id": {"type": "string", "pattern": ID_PATTERN,
               "description": "An identifier for the image"},
        "name": {"type": ["null", "string"], "maxLength": 255,
                 "description": "Descriptive name for the image"},
        "status": {"type": "string", "readOnly": true, "enum": statuses,
                   "description": "Status of the image"},
        "visibility": {"type": "string",
                       "enum": ["community", "public", "private", "shared"],
                       "description": "Scope of image accessibility"},
        "protected": {"type": "boolean",
                      "description": "If true, image will not be deletable."},
        "os_hidden": {"type": "boolean",
                      "description": "If true, image will not appear in default image list response."},
        "checksum": {"type": ["null", "string"], "readOnly": true, "maxLength": 32,
                     "description": "md5 hash of image contents."},
        "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "maxLength": 64,
                         "description": "Algorithm to calculate the os_hash_value"},
        "os_hash_value": {"type": ["null", "string"], "readOnly": true, "maxLength": 128,
                          "description": "Hexdigest of the image contents using the algorithm specified by the os_hash_algo"},
        "owner": {"type": ["null", "string"], "maxLength": 255,
                  "description": "Owner of the image"},
        "size": {"type": ["null", "integer"], "readOnly": true,
                 "description": "Size of image file in bytes"},
        "virtual_size": {"type": ["null", "integer"], "readOnly": true,
                         "description": "Virtual size of image in bytes"},
        "min_disk": {"type": "integer", "minimum": 0,
                     "description": "Amount of disk space (in GB) required to boot image."},
        "min_ram": {"type": "integer", "minimum": 0,
                    "description": "Amount of ram (in MB) required to boot image."},
        "container_format": {"type": ["null", "string"],
                             "enum": nullable_enum(CONTAINER_FORMATS.iter().map(|s| s.to_string())),
                             "description": "Format of the container"},
        "disk_format": {"type": ["null", "string"],
                        "enum": nullable_enum(app.opts.disk_formats.iter().cloned()),
                        "description": "Format of the disk"},
        "created_at": {"type": "string", "readOnly": true,
                       "description": "Date and time of image registration"},
        "updated_at": {"type": "string", "readOnly": true,
                       "description": "Date and time of the last image modification"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 255},
                 "description": "List of strings related to the image"},
        "self": {"type": "string", "readOnly": true,
                 "description": "An image self url"},
        "file": {"type": "string", "readOnly": true,
                 "description": "An image file url"},
        "schema": {"type": "string", "readOnly": true,
                   "description": "An image schema url"},
    });
    // Described always, as Glance does; served only when configured.
    props["direct_url"] = ro_string("URL to access the image file kept in external store");
    props["locations"] = json!({
        "type": "array",
        "items": {"type": "object", "required": ["url", "metadata"],
                  "properties": {"url": {"type": "string", "maxLength": 255},
                                 "metadata": {"type": "object"}}},
        "description": "A set of URLs to access the image file kept in external store"
    });
    debug_assert!(props.as_object().is_some_and(|p| {
        p.keys()
            .all(|k| repr::BASE_ATTRIBUTES.contains(&k.as_str()))
    }));
    json!({
        "name": "image",
        "properties": props,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// The schema of an image listing.
pub fn images_schema(app: &ApiApp) -> Value {
    json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema(app)},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// The schema of one membership.
pub fn member_schema() -> Value {
    let statuses: Vec<&str> = MemberStatus::ALL.iter().map(|s| s.as_str()).collect();
    json!({
        "name": "member",
        "properties": {
            "created_at": {"type": "string",
                           "description": "Date and time of image member creation"},
            "image_id": {"type": "string", "pattern": ID_PATTERN,
                         "description": "An identifier for the image"},
            "member_id": {"type": "string",
                          "description": "An identifier for the image member (tenantId)"},
            "schema": {"type": "string", "readOnly": true},
            "status": {"type": "string", "enum": statuses,
                       "description": "The status of this image member"},
            "updated_at": {"type": "string",
                           "description": "Date and time of last modification of image member"}
        }
    })
}

/// The schema of a membership listing.
pub fn members_schema() -> Value {
    json!({
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"}
        },
        "links": [{"rel": "describedby", "href": "{schema}"}]
    })
}
