"""openstacksdk's image v2 proxy against glance-api: one journey of two projects.

Run by tests/python_clients_v2.rs with the v2 venv's Python:

    python sdk_v2.py CONFIG_JSON

CONFIG_JSON names the image file and how each project connects:

    {"file": PATH, "name": NAME,
     "a": {...openstack.connect() arguments of the owner...},
     "b": {...of the other project...}, "b_project": PROJECT_ID_OF_B}

(noauth: `{"auth_type": "none", "endpoint": URL}`; Keystone: password credentials and
`image_endpoint_override`). Prints one JSON object on stdout saying what each step saw;
the Rust test checks it, and the server's side through the API.
"""

import hashlib
import json
import os
import sys
import tempfile
import warnings

import openstack
from openstack import exceptions


def connect(args):
    args = dict(args)
    if args.get("auth_type") == "none":
        endpoint = args.pop("endpoint")
        args["auth"] = {"endpoint": endpoint}
        args["image_endpoint_override"] = endpoint
    return openstack.connect(**args)


def main():
    warnings.simplefilter("ignore")
    cfg = json.load(open(sys.argv[1]))
    a = connect(cfg["a"])
    b = connect(cfg["b"])
    out = {"proxy": type(a.image).__module__}
    data = open(cfg["file"], "rb").read()
    out["uploaded_md5"] = hashlib.md5(data).hexdigest()

    # create_image with data: POST /v2/images, then PUT .../file.
    img = a.image.create_image(
        name=cfg["name"], filename=cfg["file"], disk_format="raw",
        container_format="bare", visibility="shared",
        os_distro="sdk-distro", wait=True, timeout=120)
    image_id = img.id
    # What the server says once create_image returned (it waited for `active`).
    img = a.image.get_image(image_id)
    out["created"] = {k: img[k] for k in (
        "id", "name", "status", "checksum", "size", "visibility", "owner_id",
        "hash_algo", "hash_value", "disk_format", "container_format",
        "os_distro")}
    out["created"]["properties"] = img.properties

    # find_image by name and by id; get_image.
    out["found_by_name"] = getattr(a.image.find_image(cfg["name"]), "id", None)
    out["found_by_id"] = getattr(a.image.find_image(image_id), "id", None)
    out["b_finds_before_sharing"] = getattr(
        b.image.find_image(image_id), "id", None)

    # members: the owner adds B; B accepts.
    m = a.image.add_member(image_id, member_id=cfg["b_project"])
    out["member_added"] = {"member_id": m.member_id, "status": m.status}
    out["members"] = [(x.member_id, x.status) for x in a.image.members(image_id)]
    m = b.image.update_member(cfg["b_project"], image_id, status="accepted")
    out["member_updated"] = {"member_id": m.member_id, "status": m.status}
    out["b_lists"] = image_id in [i.id for i in b.image.images()]
    out["b_finds_after_accepting"] = getattr(
        b.image.find_image(image_id), "id", None)

    # download_image: whole, into a file and streamed, by B.
    got = b.image.download_image(image_id)
    body = got.content if hasattr(got, "content") else got
    out["downloaded_md5"] = hashlib.md5(body).hexdigest()
    out["downloaded_len"] = len(body)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "copy")
        a.image.download_image(image_id, output=path)
        out["output_md5"] = hashlib.md5(open(path, "rb").read()).hexdigest()

    # B can neither delete nor change the owner's image.
    try:
        b.image.delete_image(image_id)
        out["b_delete"] = "deleted"
    except exceptions.HttpException as e:
        out["b_delete"] = e.status_code

    # delete_image by the owner; then it is gone.
    a.image.delete_image(image_id)
    out["found_after_delete"] = getattr(
        a.image.find_image(image_id), "id", None)
    try:
        a.image.get_image(image_id)
        out["get_after_delete"] = "found"
    except exceptions.NotFoundException:
        out["get_after_delete"] = 404
    print(json.dumps(out))


if __name__ == "__main__":
    main()
