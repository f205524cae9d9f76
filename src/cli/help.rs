//! Help texts: `glance help`, `glance --help` and `glance help COMMAND`.

use super::{COMMANDS, OPTIONS};

/// The full help: usage, commands, options, environment, exit status.
pub fn full() -> String {
    let mut s = String::from(
        "glance: command-line client of the Glance image service (images API v1)\n\n\
         Usage: glance COMMAND [OPTIONS] [ARGS]\n       glance help [COMMAND]\n\nCommands:\n",
    );
    for c in COMMANDS {
        let head = format!("{} {}", c.name, c.args);
        s.push_str(&format!("    {:<44} {}\n", head.trim_end(), c.summary));
    }
    s.push_str("\nOptions (anywhere on the command line):\n");
    s.push_str(&options_text());
    s.push_str(ENVIRONMENT);
    s.push_str(EXIT_STATUS);
    s.push_str(
        "\nRun 'glance help COMMAND' for the fields, filters and examples of a command.\n\
         The manual page is glance(1).\n",
    );
    s
}

/// The options, one per line.
pub fn options_text() -> String {
    let mut s = String::new();
    for o in OPTIONS {
        let short = if o.short.is_empty() {
            "    ".to_string()
        } else {
            format!("-{}, ", o.short)
        };
        let head = format!("{short}--{} {}", o.long, o.hint);
        s.push_str(&format!("    {:<26} {}\n", head.trim_end(), o.desc));
    }
    s
}

const ENVIRONMENT: &str = "
Environment (an option given on the command line wins):
    GLANCE_HOST      default of --host
    GLANCE_PORT      default of --port
    OS_AUTH_TOKEN    default of --auth_token
    OS_CLOUD         default of --os-cloud
    OS_IMAGE_URL     default of --os-image-url

Keystone login: without a token, glance logs in to Keystone (v3) with the
credentials of an openrc (OS_AUTH_URL, OS_USERNAME or OS_USER_ID,
OS_PASSWORD, OS_PROJECT_NAME or OS_PROJECT_ID, OS_USER_DOMAIN_NAME,
OS_PROJECT_DOMAIN_NAME, OS_REGION_NAME, OS_INTERFACE, OS_CACERT, or
OS_APPLICATION_CREDENTIAL_ID and _SECRET) or of the cloud OS_CLOUD of
clouds.yaml, and uses the image endpoint of the catalog unless -H, -p or
OS_IMAGE_URL name the server. See AUTHENTICATION in glance(1).
";

const EXIT_STATUS: &str = "
Exit status:
    0  success (also when a listing is empty or stdout was closed early)
    1  failure: the server refused or failed, the server could not be reached,
       the Keystone login failed, a local file could not be read or written,
       a confirmation was declined
    2  usage error: unknown command or option, bad FIELD=VALUE, missing
       argument; or a confirmation is needed and stdin is not a terminal
    3  not found: no image with that ID (or not visible to you)
";

/// The help of one command, or `None` for an unknown command.
pub fn command(name: &str) -> Option<String> {
    let name = if name == "image-download" {
        "download"
    } else {
        name
    };
    let spec = COMMANDS.iter().find(|c| c.name == name)?;
    let body = match name {
        "help" => HELP,
        "add" => ADD,
        "update" => UPDATE,
        "delete" => DELETE,
        "index" => INDEX,
        "details" => DETAILS,
        "show" => SHOW,
        "download" => DOWNLOAD,
        "clear" => CLEAR,
        "image-members" => IMAGE_MEMBERS,
        "member-images" => MEMBER_IMAGES,
        "member-add" => MEMBER_ADD,
        "member-delete" => MEMBER_DELETE,
        "members-replace" => MEMBERS_REPLACE,
        other => super::cache::help(other).unwrap_or(""),
    };
    Some(format!(
        "Usage: glance {} {}\n\n{}\n\nOptions: see 'glance help'.\n",
        spec.name,
        spec.args,
        body.replace("{FILTERS}", FILTERS).trim_end()
    ))
}

const HELP: &str = "Prints the list of commands and options, or the help of COMMAND.";

const ADD: &str = "\
Adds a new image. Metadata is given as FIELD=VALUE arguments (keys are
lower-cased, '-' becomes '_'; a value may contain '='):

    name              required: the image's name
    id                the image id (default: a new UUID chosen by the server)
    is_public         true, on, 1 or false, off, 0 (default: false)
    disk_format       ami ari aki vhd vhdx vmdk raw qcow2 vdi iso (default: raw,
                      or the container format when that is ami, ari or aki;
                      the server may accept fewer: its disk_formats option)
    container_format  ami ari aki bare ovf (default: ovf, or the disk format
                      when that is ami, ari or aki)
    min_ram           minimum RAM in MB (default: 0)
    min_disk          minimum disk in GB (default: 0)
    owner             the owning tenant (admins only)
    checksum          expected MD5 of the data: the upload fails if it differs
    location          register data that lives at this http(s) URI instead
                      of uploading it
    status, size, virtual_size
                      cannot be set: removed with a warning (the server
                      computes virtual_size from the data)

Any other FIELD=VALUE is a custom property.

The data is streamed, never read into memory, from --file PATH, or else from
standard input when it is redirected from a file or a pipe. A file's size is
sent ahead; a pipe is sent chunked. With --progress, and when stderr is a
terminal, the bytes sent, percent, rate (in MiB/s: binary units) and time
left are shown on stderr; of a pipe only the bytes and the rate.
With location= no data may be given. With neither data nor a location
(stdin is a terminal or /dev/null) the image is only reserved: status queued,
for a later 'glance update ID --file PATH'.

Prints 'Added new image with ID: <ID>' (with -v, the new record too). With
--dry-run prints the metadata that would be sent and contacts no server.

Examples:
    glance add name=cirros disk_format=qcow2 container_format=bare \\
        is_public=true --file cirros.img --progress
    glance add name=\"Ubuntu 24.04\" distro=ubuntu < ubuntu.qcow2
    curl -s http://example.com/img | glance add name=web disk_format=raw
    glance add name=remote location=http://example.com/images/remote.iso";

const UPDATE: &str = "\
Changes the metadata of image ID. Fields: name, is_public, disk_format,
container_format, min_ram, min_disk, owner (admins), location, checksum, as
for 'add'; any other FIELD=VALUE is a custom property. id, size,
virtual_size, status, created_at, updated_at, deleted_at and deleted cannot
be changed and are removed with a warning.

As with every Glance v1 update, when any FIELD=VALUE is given the image's
custom properties are replaced by those given: properties not named are
deleted. Without FIELD=VALUE arguments the metadata is left as it is.

--file PATH uploads data into an image that is still queued (reserved);
--progress shows its progress, as for 'add'.

Prints 'Updated image <ID>' (with -v, the new metadata too).

Examples:
    glance update 6f2f...c1 is_public=false distro=debian arch=x86_64
    glance update 6f2f...c1 --file disk.qcow2";

const DELETE: &str = "\
Deletes image ID and its data. Asks 'Delete image <ID>? [y/N]' on the
terminal unless -f/--force; when standard input is not a terminal, refuses
without --force (exit 2). Prints 'Deleted image <ID>'.

Example:
    glance delete -f 6f2f...c1";

const FILTERS: &str = "\
Filters (FILTER=VALUE): name, status, disk_format, container_format,
min_ram, min_disk, size_min, size_max (sizes in bytes), is_public (true,
false or none: admins only), property-KEY=VALUE; any other KEY=VALUE
filters on the custom property KEY, as property-KEY=VALUE.

Pages of --limit images (default 10) are fetched in --sort_key/--sort_dir
order (default created_at, desc) starting after --marker. After a full page
'Fetch next page? [Y/n]' is asked on a terminal; with -f/--force, or when
standard input is not a terminal, every page is fetched without asking.";

const INDEX: &str = "\
Lists the images you can see, one per line: ID, name, disk and container
format, size. Nothing at all is printed when there is none. The ID column is
36 characters wide, for UUIDs.

{FILTERS}

Examples:
    glance index
    glance index disk_format=qcow2 distro=ubuntu --sort_key name --sort_dir asc";

const DETAILS: &str = "\
Lists the images you can see with all their metadata, each as in 'show',
between lines of '='. Nothing is printed when there is none.

{FILTERS}

Example:
    glance details status=active --limit 50";

const SHOW: &str = "\
Shows the metadata of image ID: URI, id, public, name, status, size, virtual
size (once the server has computed it), disk and container format, minimum
RAM and disk, owner and custom properties.

Example:
    glance show 6f2f...c1";

const DOWNLOAD: &str = "\
Downloads the data of image ID into --file PATH, or to standard output when
that is not a terminal. The data is streamed and its size and MD5 checksum
are checked against the image's metadata; a partial or corrupt file is
removed. With --progress, and when stderr is a terminal, the bytes received,
percent, rate (MiB/s) and time left are shown on stderr, never on stdout.
'image-download' is the same command.

Examples:
    glance download 6f2f...c1 --file cirros.img
    glance download 6f2f...c1 --progress | sha256sum";

const CLEAR: &str = "\
Deletes every image you can list (for a caller without a tenant on a noauth
server: every public image). Asks 'Delete all images? [y/N]' on the terminal
unless -f/--force; when standard input is not a terminal, refuses without
--force (exit 2). With -v prints each deletion; with --dry-run lists what
would be deleted.";

const IMAGE_MEMBERS: &str = "\
Lists the members (tenants) image ID is shared with, one per line; a member
that may share the image further is marked with '*'.";

const MEMBER_IMAGES: &str = "\
Lists the images shared with MEMBER, one per line; '*' marks those MEMBER
may share further.";

const MEMBER_ADD: &str = "\
Shares image ID with MEMBER (a tenant). With --can-share the member may share
it further; without, that right is taken away (also from an existing
member), as Glance's own client did. Member changes need a tenant: a token
(-A, or a Keystone login) on a Keystone server, or --tenant on a noauth
server. Silent on success.

Example:
    glance member-add 6f2f...c1 tenant-b --can-share --tenant tenant-a";

const MEMBER_DELETE: &str = "\
Stops sharing image ID with MEMBER. Silent on success.";

const MEMBERS_REPLACE: &str = "\
Makes MEMBER the only member of image ID (with --can-share: one that may
share further); every other member is removed. Silent on success.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_help() {
        for c in COMMANDS {
            let h = command(c.name).unwrap_or_default();
            assert!(h.starts_with(&format!("Usage: glance {}", c.name)), "{h}");
            assert!(h.lines().count() > 3, "{}: {h}", c.name);
            assert!(!h.contains("{FILTERS}"));
        }
        assert!(command("image-download").is_some());
        assert!(command("bogus").is_none());
    }

    #[test]
    fn full_help_lists_everything() {
        let h = full();
        for c in COMMANDS {
            assert!(h.contains(&format!("    {} ", c.name)), "{}", c.name);
        }
        for o in OPTIONS {
            assert!(h.contains(&format!("--{}", o.long)), "{}", o.long);
        }
        for v in ["GLANCE_HOST", "GLANCE_PORT", "OS_AUTH_TOKEN"] {
            assert!(h.contains(v));
        }
    }
}
