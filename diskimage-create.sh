#!/bin/bash
# Drop-in replacement for Octavia's diskimage-create.sh, backed by amp-image.
# Same flags and environment overrides; nftables on by default (as upstream
# since 2024.1).  On a fresh host it first installs what it needs
# (scripts/setup-host: host packages and a venv with the pinned tooling).
set -eu -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${AMP_VENV:-$here/.venv}

usage() {
    cat <<'EOF'
Usage: diskimage-create.sh
            [-a **amd64** | armhf | arm64 | aarch64 | ppc64le ]
            [-b **haproxy** ]
            [-c **~/.cache/image-create** | <cache directory> ]
            [-d **trixie** | bookworm ]
            [-e]
            [-f]
            [-g **repository branch** | stable/2026.1 | ... ]
            [-h]
            [-i **debian** ]
            [-k <kernel package name> ]
            [-l <log file> ]
            [-m]
            [-n]
            [-o **amphora-x64-haproxy.qcow2** | <filename> ]
            [-p]
            [-r <root password> ]
            [-s **2** | <size in GB> ]
            [-t **qcow2** | tar | vhd | raw ]
            [-v]
            [-w <working directory> ]
            [-x]
            [-y]

        '-a' is the architecture type for the image (default: amd64)
        '-b' is the backend type (default: haproxy)
        '-c' is the path to the cache directory (default: ~/.cache/image-create)
        '-d' Debian release (default: trixie, or bookworm when the agent's
             series does not support trixie's Python)
        '-e' enable complete mandatory access control (not available on Debian)
        '-f' disable tmpfs for build
        '-g' build the agent from this git branch of DIB_REPOLOCATION_amphora_agent
             (default: octavia from PyPI)
        '-h' display this help message
        '-i' is the base OS: debian only (upstream's ubuntu, centos and rocky
             are refused)
        '-k' is the kernel meta package name, for custom kernels
        '-l' is output logfile (default: none)
        '-m' enable vCPU pinning optimizations (default: disabled)
        '-n' disable sshd (default: enabled)
        '-o' is the output image file name
        '-p' install amphora-agent from distribution packages (not available on Debian)
        '-r' enable the root account in the generated image (default: disabled),
             with this password, on the serial console (debug images only).
             Command lines are visible to every user of this host (ps, /proc):
             prefer AMP_ROOT_PASSWORD=... in the environment and no -r.  The
             image stores only the password's hash.  Password logins over SSH
             too: AMP_IMAGE_EXTRA_ARGS=--root-password-ssh.
        '-s' is the image size to produce in gigabytes (default: 2)
        '-t' is the image type (default: qcow2)
        '-v' display the script version
        '-w' working directory for image building (default: ~/.cache/amp-image/work)
        '-x' enable tracing for diskimage-builder
        '-y' enable FIPS 140-2 mode in the amphora image

Environment: DIB_ELEMENTS (replaces the element list), DIB_LOCAL_ELEMENTS and
DIB_LOCAL_ELEMENTS_PATH (added), DIB_REPOLOCATION_amphora_agent,
DIB_REPOREF_amphora_agent, DIB_REPOLOCATION_upper_constraints (a local
constraints file, or a folder holding upper-constraints.txt),
CLOUD_INIT_DATASOURCES (default ConfigDrive), DIB_OCTAVIA_AMP_USE_NFTABLES
(default True).
EOF
    exit 1
}

error() {
    echo "Error: $*" >&2
    exit 3
}

AMP_ARCH=amd64
AMP_BACKEND=haproxy
AMP_CACHEDIR=~/.cache/image-create
AMP_RELEASE=""
AMP_BASEOS=debian
AMP_KERNEL=""
AMP_LOGFILE=""
AMP_OUTPUTFILENAME=""
AMP_ROOTPW=""
AMP_SIZE=2
AMP_IMAGETYPE=qcow2
AMP_WORKDIR=""
AMP_GIT_BRANCH=""
opts=()

while getopts "a:b:c:d:efg:hi:k:l:mno:pr:s:t:vw:xy" opt; do
    case $opt in
        a)
            AMP_ARCH=$OPTARG
            case $AMP_ARCH in
                amd64|x86_64|armhf|arm64|aarch64|ppc64le) ;;
                *) error "Unsupported architecture $AMP_ARCH specified." ;;
            esac
            ;;
        b)
            AMP_BACKEND=$OPTARG
            [ "$AMP_BACKEND" = haproxy ] || error "Unsupported backend type $AMP_BACKEND specified."
            ;;
        c) AMP_CACHEDIR=$OPTARG ;;
        d) AMP_RELEASE=$OPTARG ;;
        e) echo "Warning: -e (full mandatory access control) has no effect on Debian images" >&2 ;;
        f) opts+=(--no-tmpfs) ;;
        g) AMP_GIT_BRANCH=$OPTARG ;;
        h) usage ;;
        i)
            AMP_BASEOS=$OPTARG
            case $AMP_BASEOS in
                debian) ;;
                ubuntu|ubuntu-minimal|centos|centos-minimal|rocky|fedora|rhel)
                    error "Base OS $AMP_BASEOS is not supported: amp-image builds and tests Debian only (its elements are Debian's); use -i debian." ;;
                *) error "Unsupported base OS $AMP_BASEOS specified." ;;
            esac
            ;;
        k) AMP_KERNEL=$OPTARG ;;
        l) AMP_LOGFILE=$OPTARG ;;
        m) opts+=(--cpu-pinning) ;;
        n) opts+=(--no-sshd) ;;
        o) AMP_OUTPUTFILENAME=$OPTARG ;;
        p) error "-p: distribution packages of the amphora agent do not exist for Debian; the agent is installed from PyPI or git." ;;
        r) AMP_ROOTPW=$OPTARG ;;
        s)
            AMP_SIZE=$OPTARG
            if ! [[ $AMP_SIZE =~ ^[0-9]+$ ]] || [ "$AMP_SIZE" -lt 2 ]; then
                error "Invalid image size $AMP_SIZE specified (a whole number of GB, 2 or more)."
            fi
            ;;
        t)
            AMP_IMAGETYPE=$OPTARG
            case $AMP_IMAGETYPE in
                qcow2|tar|vhd|raw) ;;
                *) error "Unsupported image type $AMP_IMAGETYPE specified." ;;
            esac
            ;;
        v)
            echo "amp-image diskimage-create.sh $(sed -n 's/^version = "\(.*\)"/\1/p' "$here/pyproject.toml")"
            exit 0
            ;;
        w) AMP_WORKDIR=$OPTARG ;;
        x) opts+=(--trace) ;;
        y) opts+=(--fips) ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || error "Unexpected arguments: $*"

# Output: upstream takes a name and appends the image type's extension.
output=${AMP_OUTPUTFILENAME:-amphora-x64-haproxy}
case $output in
    *."$AMP_IMAGETYPE") ;;
    *) output=$output.$AMP_IMAGETYPE ;;
esac

opts+=(--arch "$AMP_ARCH" --base-os "$AMP_BASEOS" --cache-dir "$AMP_CACHEDIR")
opts+=(--size "$AMP_SIZE" --format "$AMP_IMAGETYPE" -o "$output")
[ -z "$AMP_RELEASE" ] || opts+=(--release "$AMP_RELEASE")
[ -z "$AMP_KERNEL" ] || opts+=(--kernel-package "$AMP_KERNEL")
[ -z "$AMP_LOGFILE" ] || opts+=(--log-file "$AMP_LOGFILE")
[ -z "$AMP_WORKDIR" ] || opts+=(--work-dir "$AMP_WORKDIR")
[ "${DIB_OCTAVIA_AMP_USE_NFTABLES:-True}" = True ] || opts+=(--iptables)
opts+=(--datasources "${CLOUD_INIT_DATASOURCES:-ConfigDrive}")

# The agent's source: upstream clones DIB_REPOLOCATION_amphora_agent at
# DIB_REPOREF_amphora_agent (or -g); without them amp-image uses PyPI.
agent_location=${DIB_REPOLOCATION_amphora_agent:-}
agent_ref=${DIB_REPOREF_amphora_agent:-$AMP_GIT_BRANCH}
if [ -n "$agent_location" ]; then
    opts+=(--agent-source "git+$agent_location${agent_ref:+@$agent_ref}")
elif [ -n "$AMP_GIT_BRANCH" ]; then
    error "-g $AMP_GIT_BRANCH needs DIB_REPOLOCATION_amphora_agent (the agent's git URL); without it the agent comes from PyPI."
fi

if [ -n "${DIB_REPOLOCATION_upper_constraints:-}" ]; then
    uc=$DIB_REPOLOCATION_upper_constraints
    [ ! -d "$uc" ] || uc=$uc/upper-constraints.txt
    [ -f "$uc" ] || error "DIB_REPOLOCATION_upper_constraints: $uc is not a local file; download upper-constraints.txt and point at it."
    opts+=(--constraints "$uc")
fi

[ -z "${DIB_ELEMENTS:-}" ] || opts+=(--replace-elements "$DIB_ELEMENTS")
for element in ${DIB_LOCAL_ELEMENTS:-}; do
    opts+=(--element "$element")
done
if [ -n "${DIB_LOCAL_ELEMENTS_PATH:-}" ]; then
    IFS=: read -r -a local_paths <<< "$DIB_LOCAL_ELEMENTS_PATH"
    for path in "${local_paths[@]}"; do
        opts+=(--elements-path "$path")
    done
fi

# Extra amp-image options (for example --dry-run), after the mapped ones.
read -r -a extra <<< "${AMP_IMAGE_EXTRA_ARGS:-}"

if [ "${AMP_IMAGE_SKIP_SETUP:-0}" != 1 ]; then
    "$here/scripts/setup-host"
fi
# amp-image never takes the password on its command line: hand it over in the
# environment, where only this user (and root) can read it.
if [ -n "$AMP_ROOTPW" ]; then
    export AMP_ROOT_PASSWORD=$AMP_ROOTPW
fi
unset AMP_ROOTPW AMP_VENV
exec "$venv/bin/amp-image" build "${opts[@]}" "${extra[@]}"
