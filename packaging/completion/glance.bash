# Bash completion of glance, the command-line client of glance-rs (images API v1).
#
# Installed as /usr/share/bash-completion/completions/glance (loaded on first use by the
# bash-completion package); without it, `source` this file from ~/.bashrc. zsh uses it too,
# through bashcompinit (see _glance beside it), so it sticks to what both shells run: no
# bash-completion helpers, no `read -a`.
#
# Completes the commands, the long options, the FIELD=VALUE names of add, update, index
# and details with the known values of is_public, disk_format, container_format and status,
# the values of --sort_key, --sort_dir and --file, and image IDs (show, update, delete,
# download, the member commands, cache-prefetch, cache-purge, --marker) by running
# `glance index` against the server of the command line (-H, -p, -A, --tenant, --roles,
# else the environment), for at most 2 seconds, so that a slow or absent server never hangs
# the shell.
#
# The lists below follow glance's own tables; tests/completion.rs checks them against the
# code (commands, options, formats, statuses, sort keys).

# The words of a list: commands, options, value_options, id_commands, add_fields,
# update_fields, filters, disk_formats, container_formats, statuses, sort_keys.
_glance_list() {
    case $1 in
    commands)
        echo "help add update delete index details show download image-download clear" \
            "image-members member-images member-add member-delete members-replace" \
            "cache-index cache-invalid cache-incomplete cache-prefetching cache-prefetch" \
            "cache-purge cache-clear cache-reap-invalid cache-reap-stalled" ;;
    options)
        echo "--host --port --auth_token --tenant --roles --verbose --debug --limit --marker" \
            "--sort_key --sort_dir --force --dry-run --can-share --file --progress --help" \
            "--version --os-cloud --os-image-url" ;;
    value_options)
        echo "-H --host -p --port -A --auth_token --tenant --roles --limit --marker" \
            "--sort_key --sort_dir --file --os-cloud --os-image-url" ;;
    id_commands)
        echo "show update delete download image-download image-members member-add" \
            "member-delete members-replace cache-prefetch cache-purge" ;;
    add_fields)
        echo "name= id= is_public= disk_format= container_format= min_ram= min_disk= owner=" \
            "checksum= location=" ;;
    update_fields)
        echo "name= is_public= disk_format= container_format= min_ram= min_disk= owner=" \
            "checksum= location=" ;;
    filters)
        echo "name= status= disk_format= container_format= min_ram= min_disk= size_min=" \
            "size_max= is_public= property-" ;;
    disk_formats) echo "ami ari aki vhd vhdx vmdk raw qcow2 vdi iso ploop" ;;
    container_formats) echo "ami ari aki bare ovf ova docker compressed" ;;
    statuses) echo "queued saving active killed deleted pending_delete deactivated" ;;
    sort_keys) echo "name status container_format disk_format size id created_at updated_at" ;;
    esac
}

# Splits $1 (the command line up to the cursor) into _glance_words at unquoted blanks, as the
# shell will (quotes and backslashes removed); the last word is the one being completed,
# empty after a blank. Splitting the line ourselves keeps `disk_format=q` one word, whatever
# COMP_WORDBREAKS says.
_glance_split() {
    local line=$1 word= c q= i
    _glance_words=()
    for ((i = 0; i < ${#line}; i++)); do
        c=${line:$i:1}
        if [[ $q == "'" ]]; then
            if [[ $c == "'" ]]; then q=; else word+=$c; fi
        elif [[ $c == '\' ]]; then
            i=$((i + 1))
            word+=${line:$i:1}
        elif [[ $q == '"' ]]; then
            if [[ $c == '"' ]]; then q=; else word+=$c; fi
        elif [[ $c == '"' || $c == "'" ]]; then
            q=$c
        elif [[ $c == ' ' || $c == $'\t' ]]; then
            [[ -n $word ]] && _glance_words+=("$word")
            word=
        else
            word+=$c
        fi
    done
    _glance_words+=("$word")
}

# Adds to COMPREPLY each word of $2 that starts with $1.
_glance_add() {
    local w
    for w in $2; do
        [[ $w == "$1"* ]] && COMPREPLY+=("$w")
    done
}

# Whether $1 is a plain value (letters, digits, . _ : @ % + = , / -) that can be passed on
# as it is: a value with quotes, $ or backquotes is left out rather than evaluated.
_glance_plain() {
    [[ -n $1 && $1 != *[!A-Za-z0-9._:@%+=,/-]* ]]
}

# The image IDs of the server the command line names, one per line: `glance index` with
# its -H, -p, -A, --tenant and --roles (plain values only), bounded by `timeout 2`. Nothing
# when `timeout` is missing, the server is slow or down, or glance fails.
_glance_image_ids() {
    command -v timeout >/dev/null 2>&1 || return 0
    local prog=${_glance_words[0]} w v i n=$((${#_glance_words[@]} - 1))
    local -a conn=()
    [[ $prog == "~/"* ]] && prog=$HOME/${prog#"~/"}
    for ((i = 1; i < n; i++)); do
        w=${_glance_words[i]}
        case $w in
        -H | -p | -A | --host | --port | --auth_token | --tenant | --roles)
            v=${_glance_words[i + 1]}
            i=$((i + 1))
            _glance_plain "$v" && conn+=("$w" "$v") ;;
        --host=* | --port=* | --auth_token=* | --tenant=* | --roles=*)
            _glance_plain "${w#*=}" && conn+=("$w") ;;
        esac
    done
    timeout 2 "$prog" "${conn[@]}" --limit 100 index </dev/null 2>/dev/null |
        while read -r w _; do
            # Rows start with an ID; skip the header (ID Name ...) and the rule (---).
            [[ -z $w || $w == ID || $w == -* ]] || echo "$w"
        done
}

# The values of FIELD (as in FIELD=VALUE) for `add`/`update` (mode "meta") or the
# listings (mode "filter").
_glance_field_values() {
    case $1 in
    is_public) [[ $2 == filter ]] && echo "true false none" || echo "true false" ;;
    disk_format) _glance_list disk_formats ;;
    container_format) _glance_list container_formats ;;
    status) [[ $2 == filter ]] && _glance_list statuses ;;
    esac
}

# Completes the value of option $1 (given as a separate word, or as --opt=) from $2.
_glance_option_value() {
    case $1 in
    --sort_key) _glance_add "$2" "$(_glance_list sort_keys)" ;;
    --sort_dir) _glance_add "$2" "asc desc" ;;
    --marker) _glance_add "$2" "$(_glance_image_ids)" ;;
    --file)
        local f
        while IFS= read -r f; do COMPREPLY+=("$f"); done < <(compgen -f -- "$2")
        type compopt >/dev/null 2>&1 && compopt -o filenames 2>/dev/null ;;
    esac
}

# Completes a FIELD=VALUE argument $1 from the fields $2, in mode $3 (meta or filter).
_glance_field() {
    local cur=$1
    if [[ $cur == *=* ]]; then
        local field=${cur%%=*} v
        for v in $(_glance_field_values "$field" "$3"); do
            [[ $field=$v == "$cur"* ]] && COMPREPLY+=("$field=$v")
        done
    else
        _glance_add "$cur" "$2"
    fi
}

# The completion function: bash calls it with COMP_LINE and COMP_POINT set (zsh's
# bashcompinit too); COMP_WORDS/COMP_CWORD stand in when COMP_LINE is unset.
_glance_bash() {
    COMPREPLY=()
    local line
    if [[ -n ${COMP_LINE-} ]]; then
        line=${COMP_LINE:0:${COMP_POINT:-${#COMP_LINE}}}
    else
        line="${COMP_WORDS[*]:0:$((COMP_CWORD + 1))}"
    fi
    _glance_split "$line"
    local n=$((${#_glance_words[@]} - 1))
    local cur=${_glance_words[n]} prev= cmd= pos=0 i w
    local value_options=" $(_glance_list value_options) "
    if ((n > 0)); then prev=${_glance_words[n - 1]}; fi
    # The command is the first word that is neither an option nor an option's value.
    for ((i = 1; i < n; i++)); do
        w=${_glance_words[i]}
        case $value_options in
        *" $w "*) i=$((i + 1)); continue ;;
        esac
        case $w in
        -*) ;;
        *) if [[ -z $cmd ]]; then cmd=$w; else pos=$((pos + 1)); fi ;;
        esac
    done
    case $value_options in
    *" $prev "*)
        case $prev in
        -H | -p | -A) ;;
        *) _glance_option_value "$prev" "$cur" ;;
        esac
        _glance_trim
        return 0 ;;
    esac
    case $cur in
    --*=*) _glance_option_value "${cur%%=*}" "${cur#*=}"
        local k
        for ((k = 0; k < ${#COMPREPLY[@]}; k++)); do
            COMPREPLY[k]=${cur%%=*}=${COMPREPLY[k]}
        done ;;
    -*) _glance_add "$cur" "$(_glance_list options)" ;;
    *) _glance_argument "$cmd" "$pos" "$cur" ;;
    esac
    _glance_trim
    return 0
}

# Completes a positional argument: the command, or argument number $2 (from 0) of $1.
_glance_argument() {
    local cmd=$1 pos=$2 cur=$3
    if [[ -z $cmd ]]; then
        _glance_add "$cur" "$(_glance_list commands)"
        return
    fi
    if ((pos == 0)); then
        case " $(_glance_list id_commands) " in
        *" $cmd "*)
            _glance_add "$cur" "$(_glance_image_ids)"
            return ;;
        esac
    fi
    case $cmd in
    help) ((pos == 0)) && _glance_add "$cur" "$(_glance_list commands)" ;;
    add) _glance_field "$cur" "$(_glance_list add_fields)" meta ;;
    update) _glance_field "$cur" "$(_glance_list update_fields)" meta ;;
    index | details) _glance_field "$cur" "$(_glance_list filters)" filter ;;
    esac
}

# Fits COMPREPLY to the word the shell replaces. Bash's readline splits words at the
# characters of COMP_WORDBREAKS too (`=` and `:` among them by default) and replaces only the
# text after the last of them (`q` of `disk_format=q`), so that part is dropped from each
# reply (as bash-completion's __ltrim_colon_completions does); zsh sets no COMP_WORDBREAKS
# and replaces the whole word. No space is added after `FIELD=` or `property-`.
_glance_trim() {
    local cur=${_glance_words[${#_glance_words[@]} - 1]} rest k
    rest=$cur
    case ${COMP_WORDBREAKS-} in
    *=*:* | *:*=*) rest=${cur##*[=:]} ;;
    *=*) rest=${cur##*=} ;;
    *:*) rest=${cur##*:} ;;
    esac
    local drop=${cur%"$rest"}
    for ((k = 0; k < ${#COMPREPLY[@]}; k++)); do
        case ${COMPREPLY[k]} in
        *= | property-) type compopt >/dev/null 2>&1 && compopt -o nospace 2>/dev/null ;;
        esac
        [[ -n $drop ]] && COMPREPLY[k]=${COMPREPLY[k]#"$drop"}
    done
}

complete -F _glance_bash glance
