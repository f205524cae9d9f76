"""openstacksdk's image v1 proxy against glance-api, without Keystone.

Run by tests/python_clients.rs with the venv's Python:

    python sdk_v1.py ENDPOINT IMAGE_FILE LOCATION_URL

It connects with `auth_type='none'` and an image endpoint override, checks that
`conn.image` is `openstack.image.v1._proxy.Proxy`, and prints one JSON object on stdout
saying what happened; the Rust test then checks the server side through the API.

The v1 proxy's high-level calls mostly speak v2 idioms that no Glance v1 ever accepted
(JSON bodies on POST/PUT, `GET /images/<id>/file`, properties sent as `x-image-meta-<key>`),
so the script does two things:

* the working flow: the proxy's own calls where they work (`images()`, `find_image()`,
  `delete_image()`), and otherwise the proxy as the keystoneauth adapter it is
  (`conn.image.post/put/head/get`) with v1 headers, the requests the proxy's
  `_upload_image` means to send;
* the quirks: each broken high-level call once, recording how the server answered, so the
  test can assert the server answers them as Glance would.
"""

import hashlib
import json
import sys
import warnings

import openstack
from openstack import exceptions
from openstack.image.v1 import _proxy as v1_proxy


def checked(resp, what):
    """Raises with the server's reply when `resp` is not a success."""
    if resp.status_code >= 400:
        raise SystemExit(
            "%s: HTTP %s: %s" % (what, resp.status_code, resp.text[:500]))
    return resp


def outcome(call):
    """Runs `call`; returns what happened as a JSON-friendly dict."""
    try:
        value = call()
    except exceptions.HttpException as e:
        return {"raised": type(e).__name__, "status": e.status_code,
                "details": str(e.details or "")}
    except Exception as e:  # client-side failures are part of what we record
        return {"raised": type(e).__name__, "message": str(e)[:300]}
    return {"value": value}


def main():
    endpoint, image_file, location = sys.argv[1:4]
    warnings.simplefilter("ignore")
    conn = openstack.connection.Connection(
        auth_type="none",
        auth={"endpoint": endpoint},
        image_api_version="1",
        image_endpoint_override=endpoint,
    )
    image = conn.image
    assert isinstance(image, v1_proxy.Proxy), type(image)
    out = {"proxy": type(image).__module__, "endpoint": image.get_endpoint()}

    with open(image_file, "rb") as f:
        data = f.read()
    md5 = hashlib.md5(data).hexdigest()

    # --- Working flow ---------------------------------------------------------------------
    # Reserve with v1 headers (the proxy's _upload_image POSTs JSON instead: see quirks).
    resp = checked(image.post("/images", headers={
        "x-image-meta-name": "sdk-img",
        "x-image-meta-disk_format": "qcow2",
        "x-image-meta-container_format": "bare",
        "x-image-meta-is_public": "True",
        "x-image-meta-property-os_distro": "cirros",
        "x-image-meta-property-hw_disk_bus": "virtio",
    }), "reserve")
    reserved = resp.json()["image"]
    image_id = reserved["id"]
    out["reserved_status"] = reserved["status"]

    # Upload as _upload_image does (purge-props false, the checksum, an open file, so
    # Content-Length framing), plus the Content-Type it forgets.
    with open(image_file, "rb") as f:
        resp = checked(image.put("/images/%s" % image_id, headers={
            "x-glance-registry-purge-props": "false",
            "x-image-meta-checksum": md5,
            "Content-Type": "application/octet-stream",
        }, data=f), "upload")
    uploaded = resp.json()["image"]
    out["id"] = image_id
    out["uploaded"] = {k: uploaded[k] for k in ("status", "size", "checksum")}

    listed = [i for i in image.images() if i.id == image_id]
    assert len(listed) == 1, "images() does not list %s" % image_id
    out["listed"] = {"name": listed[0].name,
                     "properties": listed[0].properties}

    found = image.find_image("sdk-img", ignore_missing=False)
    out["found_by_name"] = found.id

    checked(image.put("/images/%s" % image_id, headers={
        "x-glance-registry-purge-props": "false",
        "x-image-meta-name": "sdk-img-2",
        "x-image-meta-min_ram": "256",
        "x-image-meta-property-os_version": "2",
    }), "update")
    head = checked(image.head("/images/%s" % image_id), "head")
    out["head"] = {k.lower(): v for k, v in head.headers.items()
                   if k.lower().startswith("x-image-meta-")}

    resp = checked(image.get("/images/%s" % image_id, stream=True), "download")
    digest = hashlib.md5()
    size = 0
    for chunk in resp.iter_content(chunk_size=65536):
        digest.update(chunk)
        size += len(chunk)
    out["download"] = {"md5": digest.hexdigest(), "size": size,
                       "checksum_header": resp.headers.get("x-image-meta-checksum")}

    resp = checked(image.post("/images", headers={
        "x-image-meta-name": "sdk-remote",
        "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare",
        "x-image-meta-location": location,
    }), "register location")
    remote = resp.json()["image"]
    out["remote"] = {k: remote[k] for k in ("id", "status", "size")}

    # --- Quirks: the high-level calls that cannot work against a v1 server ----------------
    quirks = {}
    quirk_id = checked(image.post("/images", headers={
        "x-image-meta-name": "sdk-quirks",
        "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare",
        "x-image-meta-is_public": "True",
        "x-image-meta-property-keep": "me",
        "Content-Type": "application/octet-stream",
    }, data=b"quirk data"), "quirk image").json()["image"]["id"]
    out["quirk_id"] = quirk_id
    # POST /images with a JSON body (metadata as JSON, not headers).
    quirks["create_image"] = outcome(lambda: image.create_image(
        "sdk-created", filename=image_file, disk_format="raw",
        container_format="bare", wait=True).id)
    # GET /images/<id> answers the image data, not JSON: an Image with only its id.
    quirks["get_image"] = outcome(lambda: image.get_image(quirk_id).name)
    # PUT /images/<id> with a JSON body: an upload to an active image.
    quirks["update_image"] = outcome(
        lambda: image.update_image(quirk_id, name="renamed").name)
    # GET /images/<id>/file (a v2 path): the 404 reply comes back as the "download".
    quirks["download_image"] = outcome(
        lambda: image.download_image(quirk_id).status_code)
    # PUT with `x-image-meta-<key>` (not `-property-`) and no purge-props header.
    quirk = [i for i in image.images() if i.id == quirk_id]
    quirks["update_image_properties"] = outcome(
        lambda: image.update_image_properties(
            image=quirk[0], meta={}, os_type="linux"))
    out["quirks"] = quirks
    head = checked(image.head("/images/%s" % quirk_id), "head quirk")
    out["quirk_properties_after"] = sorted(
        k.lower() for k in head.headers
        if k.lower().startswith("x-image-meta-property-"))

    # --- Delete (works) -------------------------------------------------------------------
    for i in (image_id, remote["id"], quirk_id):
        image.delete_image(i, ignore_missing=False)
    out["deleted"] = [image_id, remote["id"], quirk_id]
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
