#!/usr/bin/env bash
# Enrol this Linux host in a cis490-train fleet with one command:
#   a venv, torch for this host's CUDA driver (or the CPU build), the package with the matching
#   xgboost extra (`gpu` or `cpu`, never both), the capability self-test, /etc/cis490/worker.env
#   (written once, never overwritten) and one systemd worker per GPU (cis490-worker@0, @1, ...)
#   or one `cis490-worker@cpu`.
# Re-running it is safe: it updates the venv and the units, keeps the env file, and disables the
# workers of GPUs that are gone. The two secrets never go on the command line (where ps shows them
# to every user): they come from files of one line, or from the caller's environment.
#
#   sudo deploy/install-worker.sh --broker-url-file /root/cis490/broker-url \
#       --store-url http://coordinator:8490 --token-file /root/cis490/token --data-dir /srv/cis490/data
#   sudo --preserve-env=CIS490_BROKER_URL,CIS490_WORKER_TOKEN deploy/install-worker.sh --store-url ...
#   deploy/install-worker.sh --dry-run ...            # print every command and file, change nothing
#   deploy/install-worker.sh --prefix /tmp/x ...      # write the files under /tmp/x, run nothing
set -euo pipefail

TORCH_VERSION=2.13.0
TORCH_INDEX=https://download.pytorch.org/whl
# The CUDA builds pytorch.org publishes for TORCH_VERSION, oldest first (128 = CUDA 12.8).
# Keep in step with TORCH_VERSION; --torch-index overrides the choice.
TORCH_CUDA_BUILDS=(126 128 130)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UNIT_SOURCE_DIR="$SCRIPT_DIR/systemd"
WORKER_UNIT=cis490-worker@.service
QUEUES_DROPIN=queues.conf
TIER_PATTERN='^(cpu|cuda|cuda-[1-9][0-9]{0,4}g)$'

# Options (see usage).
BROKER_URL=""
BROKER_URL_FILE=""
STORE_URL=""
TOKEN_FILE=""
DATA_DIR=/var/lib/cis490/data
QUEUES=""
SOURCE=$(dirname "$SCRIPT_DIR")
SERVICE_USER=cis490
VENV=""
PYTHON=python3
TORCH_INDEX_OVERRIDE=""
PREFIX=""
DRY_RUN=0

usage() {
    cat <<EOF
usage: install-worker.sh [options]

  --broker-url-file FILE
                     a file holding CIS490_BROKER_URL with the worker credential on one line
                     (redis://worker:PASSWORD@HOST:6379/0); or export CIS490_BROKER_URL
  --broker-url URL   the same for a URL without a password (one with a password is refused:
                     ps would show it to every user)
  --store-url URL    CIS490_STORE_URL, the artifact store (http://HOST:8490)
  --token-file FILE  a file holding CIS490_WORKER_TOKEN, the store's upload token, on one line;
                     or export CIS490_WORKER_TOKEN (sudo --preserve-env=CIS490_WORKER_TOKEN)
                     (the broker URL, the store URL and the token are required while
                     /etc/cis490/worker.env does not exist yet; an existing file is never changed)
  --data-dir DIR     CIS490_DATA_DIR, the dataset the trainer reads (default $DATA_DIR)
  --queues TIERS     tiers for every worker on this host, e.g. cuda-8g or cpu
                     (default: cuda,cpu on a GPU host, cpu otherwise)
  --source SPEC      the package to install: a directory, a wheel, a pip requirement or a URL
                     (default: this checkout, $SOURCE)
  --user NAME        the system user the workers run as (default $SERVICE_USER; created if missing)
  --venv DIR         the virtual environment (default /opt/cis490/venv)
  --python PATH      the Python 3.11+ that makes the venv (default $PYTHON)
  --torch-index URL  pip index for torch instead of the one chosen from the driver's CUDA version
  --dry-run          print every command and file instead of running or writing it
  --prefix DIR       write every file under DIR and run no command (print them instead)
  -h, --help         this text
EOF
}

# Bad input: exit 2, as cis490-train does.
die() {
    echo "error: $*" >&2
    exit 2
}

# A step failed: exit 1.
fail() {
    echo "error: $*" >&2
    exit 1
}

warn() {
    echo "warning: $*" >&2
}

step() {
    echo "==> $*"
}

# Run a command, or only print it in --dry-run / --prefix mode.
run() {
    if ((DRY_RUN)); then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

need_value() {
    [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"
}

# A URL whose user part holds a password (user:PASSWORD@, :PASSWORD@) or that passes one as a query.
has_password() {
    [[ $1 =~ ^[A-Za-z0-9+.-]+://[^/@]*:[^/@]*@ || $1 == *[?\&]password=* ]]
}

parse_args() {
    while (($#)); do
        case $1 in
            --broker-url)
                need_value "$@"
                ! has_password "$2" || die "--broker-url carries a password, which ps shows to every user: put the URL on one line of a file and give --broker-url-file FILE, or export CIS490_BROKER_URL"
                BROKER_URL=$2
                shift 2
                ;;
            --broker-url-file) need_value "$@"; BROKER_URL_FILE=$2; shift 2 ;;
            --store-url) need_value "$@"; STORE_URL=$2; shift 2 ;;
            --token | --token=*) die "--token puts the token on the command line, which ps shows to every user: put it on one line of a file and give --token-file FILE, or export CIS490_WORKER_TOKEN" ;;
            --token-file) need_value "$@"; TOKEN_FILE=$2; shift 2 ;;
            --data-dir) need_value "$@"; DATA_DIR=$2; shift 2 ;;
            --queues) need_value "$@"; QUEUES=$2; shift 2 ;;
            --source) need_value "$@"; SOURCE=$2; shift 2 ;;
            --user) need_value "$@"; SERVICE_USER=$2; shift 2 ;;
            --venv) need_value "$@"; VENV=$2; shift 2 ;;
            --python) need_value "$@"; PYTHON=$2; shift 2 ;;
            --torch-index) need_value "$@"; TORCH_INDEX_OVERRIDE=$2; shift 2 ;;
            --prefix) need_value "$@"; PREFIX=$2; DRY_RUN=1; shift 2 ;;
            --dry-run) DRY_RUN=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown option '${1%%=*}'; valid: --broker-url-file --broker-url --store-url --token-file --data-dir --queues --source --user --venv --python --torch-index --dry-run --prefix" ;;
        esac
    done
}

# VALUE: the one line of a secret's file (blank lines and surrounding spaces ignored).
read_value_file() {
    local option=$1 path=$2 line
    VALUE=""
    [[ -f $path && -r $path ]] || die "$option $path: not a readable file"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line#"${line%%[![:space:]]*}"}
        line=${line%"${line##*[![:space:]]}"}
        [[ -n $line ]] || continue
        [[ -z $VALUE ]] || die "$option $path: the file holds more than one line; put the value alone on one line"
        VALUE=$line
    done <"$path"
    [[ -n $VALUE ]] || die "$option $path: the file is empty; put the value on one line"
}

# BROKER_URL and TOKEN from their files, else from the caller's CIS490_BROKER_URL / CIS490_WORKER_TOKEN;
# BROKER_FROM and TOKEN_FROM name where each came from, for messages that must not show the value.
read_secrets() {
    BROKER_FROM=${BROKER_URL:+--broker-url}
    TOKEN=""
    TOKEN_FROM=""
    if [[ -n $BROKER_URL_FILE ]]; then
        [[ -z $BROKER_URL ]] || die "give --broker-url or --broker-url-file, not both"
        read_value_file --broker-url-file "$BROKER_URL_FILE"
        BROKER_URL=$VALUE
        BROKER_FROM="--broker-url-file $BROKER_URL_FILE"
    elif [[ -z $BROKER_URL && -n ${CIS490_BROKER_URL+set} ]]; then
        [[ -n $CIS490_BROKER_URL ]] || die "CIS490_BROKER_URL is set but empty: give it the worker URL, or unset it"
        BROKER_URL=$CIS490_BROKER_URL
        BROKER_FROM=CIS490_BROKER_URL
    fi
    if [[ -n $TOKEN_FILE ]]; then
        read_value_file --token-file "$TOKEN_FILE"
        TOKEN=$VALUE
        TOKEN_FROM="--token-file $TOKEN_FILE"
    elif [[ -n ${CIS490_WORKER_TOKEN+set} ]]; then
        [[ -n $CIS490_WORKER_TOKEN ]] || die "CIS490_WORKER_TOKEN is set but empty: give it the store's token, or unset it"
        TOKEN=$CIS490_WORKER_TOKEN
        TOKEN_FROM=CIS490_WORKER_TOKEN
    fi
}

check_path() {
    [[ $2 =~ ^[A-Za-z0-9._/+-]*$ ]] || die "$1 '$2': paths may hold only letters, digits and . _ / + -"
}

validate_args() {
    check_path --prefix "$PREFIX"
    if [[ -n $PREFIX ]]; then
        mkdir -p "$PREFIX"
        PREFIX=$(cd "$PREFIX" && pwd)
    fi
    VENV=${VENV:-$PREFIX/opt/cis490/venv}
    ENV_DIR=$PREFIX/etc/cis490
    ENV_FILE=$ENV_DIR/worker.env
    UNIT_DIR=$PREFIX/etc/systemd/system

    check_path --venv "$VENV"
    check_path --data-dir "$DATA_DIR"
    [[ $VENV == /* ]] || die "--venv $VENV: give an absolute path"
    [[ $DATA_DIR == /* ]] || die "--data-dir $DATA_DIR: give an absolute path"
    [[ $SERVICE_USER =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "--user $SERVICE_USER: not a valid user name (lower case letters, digits, _ and -)"
    if [[ -n $BROKER_URL && ! $BROKER_URL =~ ^(redis|rediss|unix):// ]]; then
        # Only a --broker-url value is shown: the others may hold a password.
        local shown=$BROKER_FROM
        [[ $BROKER_FROM != --broker-url ]] || shown+=" $BROKER_URL"
        die "$shown: only redis://, rediss:// or unix:// URLs are supported"
    fi
    if [[ -n $STORE_URL && ! $STORE_URL =~ ^https?://[^[:space:]]+$ ]]; then
        die "--store-url $STORE_URL: give an http:// or https:// URL"
    fi
    local value
    for value in "$BROKER_URL" "$STORE_URL" "$TOKEN"; do
        [[ $value =~ ^[^[:space:]\"\'\\]*$ ]] || die "the broker URL, the store URL and the token may not hold spaces, quotes or backslashes"
    done
    if [[ -n $QUEUES ]]; then
        local tier tiers
        IFS=, read -ra tiers <<<"$QUEUES"
        ((${#tiers[@]})) || die "--queues is empty; use cpu, cuda, cuda-<N>g or a comma-separated mix"
        for tier in "${tiers[@]}"; do
            [[ $tier =~ $TIER_PATTERN ]] || die "--queues: '$tier' is not a tier; valid tiers: cpu, cuda, cuda-<N>g (e.g. cuda-8g)"
        done
    fi
}

check_host() {
    [[ $(uname -s) == Linux ]] || die "this installer is for Linux hosts; on Windows use deploy/install-worker-windows.ps1"
    if ((!DRY_RUN)); then
        [[ $EUID -eq 0 ]] || die "run it as root (sudo), or see what it would do with --dry-run or --prefix DIR"
        command -v systemctl >/dev/null || die "systemctl not found: the workers run as systemd units"
    fi
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 or newer, or name one with --python"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); cis490-train needs 3.11 or newer"
}

# GPU_INDEXES (as nvidia-smi numbers them) and DRIVER_CUDA (e.g. 12.8) from nvidia-smi; empty on a CPU host.
detect_gpus() {
    GPU_INDEXES=()
    DRIVER_CUDA=""
    command -v nvidia-smi >/dev/null || return 0
    local listing header
    if ! listing=$(nvidia-smi --query-gpu=index,name,memory.total,memory.free --format=csv,noheader,nounits 2>/dev/null); then
        warn "nvidia-smi is installed but failed (is the driver loaded?); installing as a CPU host"
        return 0
    fi
    local index rest
    while IFS=, read -r index rest; do
        index=${index//[[:space:]]/}
        [[ $index =~ ^[0-9]+$ ]] && GPU_INDEXES+=("$index")
    done <<<"$listing"
    ((${#GPU_INDEXES[@]})) || return 0
    header=$(nvidia-smi 2>/dev/null || true)
    if [[ $header =~ CUDA\ Version:\ *([0-9]+)\.([0-9]+) ]]; then
        DRIVER_CUDA="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
    fi
}

# The pip index for torch: the newest CUDA build this driver runs, or the CPU build.
choose_torch() {
    if ((${#GPU_INDEXES[@]} == 0)); then
        TORCH_SPEC="torch==$TORCH_VERSION+cpu"
        TORCH_URL=${TORCH_INDEX_OVERRIDE:-$TORCH_INDEX/cpu}
        XGBOOST_EXTRA=cpu
        return
    fi
    XGBOOST_EXTRA=gpu
    if [[ -n $TORCH_INDEX_OVERRIDE ]]; then
        # Pin the build the index names (…/whl/cu126 -> +cu126): a bare version is met by any installed build.
        local label=${TORCH_INDEX_OVERRIDE%/}
        label=${label##*/}
        TORCH_SPEC="torch==$TORCH_VERSION"
        [[ $label =~ ^(cpu|cu[0-9]+|rocm[0-9.]+)$ ]] && TORCH_SPEC+="+$label"
        TORCH_URL=$TORCH_INDEX_OVERRIDE
        return
    fi
    [[ -n $DRIVER_CUDA ]] || die "nvidia-smi shows ${#GPU_INDEXES[@]} GPU(s) but no 'CUDA Version'; name the torch build with --torch-index $TORCH_INDEX/cuXYZ"
    local major=${DRIVER_CUDA%.*} minor=${DRIVER_CUDA#*.} build chosen=""
    for build in "${TORCH_CUDA_BUILDS[@]}"; do
        if ((${build:0:2} < major || (${build:0:2} == major && ${build:2} <= minor))); then
            chosen=$build
        fi
    done
    [[ -n $chosen ]] || die "the NVIDIA driver supports CUDA $DRIVER_CUDA; torch $TORCH_VERSION needs CUDA ${TORCH_CUDA_BUILDS[0]:0:2}.${TORCH_CUDA_BUILDS[0]:2} or newer: update the driver, or name a build with --torch-index"
    TORCH_SPEC="torch==$TORCH_VERSION+cu$chosen"
    TORCH_URL=$TORCH_INDEX/cu$chosen
}

# SOURCE with the xgboost extra: /path[gpu], cis490-train[gpu]==0.1.0, or cis490-train[gpu] @ URL.
package_spec() {
    local extra=$1
    if [[ -d $SOURCE || $SOURCE == *.whl || $SOURCE == *.tar.gz || $SOURCE == *.zip ]]; then
        echo "${SOURCE}[$extra]"
    elif [[ $SOURCE == *://* ]]; then
        echo "cis490-train[$extra] @ $SOURCE"
    elif [[ $SOURCE =~ ^([A-Za-z0-9._-]+)(.*)$ && $SOURCE != *\[* ]]; then
        echo "${BASH_REMATCH[1]}[$extra]${BASH_REMATCH[2]}"
    else
        die "--source $SOURCE: give a directory, a wheel, a requirement like cis490-train==0.1.0 or a URL, without extras (the installer adds [gpu] or [cpu])"
    fi
}

install_venv() {
    step "Python environment $VENV ($TORCH_SPEC from $TORCH_URL, extra [$XGBOOST_EXTRA])"
    if [[ ! -x $VENV/bin/python ]]; then
        run "$PYTHON" -m venv "$VENV"
    fi
    local pip=("$VENV/bin/python" -m pip)
    local package other=xgboost-cpu
    package=$(package_spec "$XGBOOST_EXTRA")
    [[ $XGBOOST_EXTRA == cpu ]] && other=xgboost
    run "${pip[@]}" install --upgrade pip
    if ! run "${pip[@]}" install "$TORCH_SPEC" --index-url "$TORCH_URL"; then
        fail "pip could not install $TORCH_SPEC from $TORCH_URL; name another build with --torch-index"
    fi
    # Both xgboost distributions install the module `xgboost`: remove the other one first.
    run "${pip[@]}" uninstall --yes "$other"
    run "${pip[@]}" install "$package"
}

# The self-test: print the capability, and set INSTANCES from what it found.
self_test() {
    step "Capability self-test"
    local cli=$VENV/bin/cis490-train
    INSTANCES=()
    if [[ ! -x $cli ]]; then
        run "$cli" capability
        echo "(no venv at $VENV yet: GPUs counted with nvidia-smi)"
        INSTANCES=("${GPU_INDEXES[@]}")
    else
        # Unmasked, so every GPU of the host shows; each worker then sees only its own.
        env -u CUDA_VISIBLE_DEVICES "$cli" capability || fail "the capability self-test failed (output above)"
        local json
        json=$(env -u CUDA_VISIBLE_DEVICES "$cli" capability --json) || fail "cis490-train capability --json failed"
        mapfile -t INSTANCES < <("$VENV/bin/python" -c 'import json, sys; [print(g["index"]) for g in json.load(sys.stdin)["cuda_devices"]]' <<<"$json")
    fi
    if ((${#GPU_INDEXES[@]} != ${#INSTANCES[@]})); then
        warn "nvidia-smi lists ${#GPU_INDEXES[@]} GPU(s), the capability probe ${#INSTANCES[@]}; the workers follow the probe"
    fi
    if ((${#INSTANCES[@]})) && ((!DRY_RUN)); then
        "$VENV/bin/python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' ||
            fail "torch $TORCH_SPEC cannot use this host's GPU (driver CUDA $DRIVER_CUDA); name another build with --torch-index"
    fi
    if ((${#INSTANCES[@]} == 0)); then
        INSTANCES=(cpu)
        WORKER_QUEUES=${QUEUES:-cpu}
    else
        WORKER_QUEUES=${QUEUES:-cuda,cpu}
    fi
    if [[ ${INSTANCES[0]} == cpu && $WORKER_QUEUES == *cuda* ]]; then
        die "--queues $WORKER_QUEUES: this host has no CUDA device; use --queues cpu"
    fi
    echo "workers: ${INSTANCES[*]/#/cis490-worker@}  tiers: $WORKER_QUEUES"
}

# The workers' user, and its home /var/lib/cis490 (the units' StateDirectory), where a dataset may go.
create_user() {
    step "System user $SERVICE_USER"
    if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
        run useradd --system --home-dir /var/lib/cis490 --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    run install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" /var/lib/cis490
}

# Write a file atomically if its content changed; print it instead in a plain --dry-run.
# Sets CHANGED=1 when the file is new or different.
write_file() {
    local path=$1 mode=$2 content=$3 shown=${4:-$3}
    if [[ -f $path && $(<"$path") == "$content" ]]; then
        return
    fi
    CHANGED=1
    if ((DRY_RUN)) && [[ -z $PREFIX ]]; then
        echo "--- would write $path (mode $mode):"
        printf '%s\n' "$shown"
        return
    fi
    mkdir -p "$(dirname "$path")"
    local tmp
    tmp=$(mktemp "$path.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$path"
    echo "wrote $path"
}

# The env file as a plain --dry-run shows it: without the token and the Redis password.
mask_secrets() {
    local text=${1//"$TOKEN"/********}
    if [[ $BROKER_URL =~ ^[a-z]+://[^:/@]*:([^@]+)@ ]]; then
        text=${text//"${BASH_REMATCH[1]}"/********}
    fi
    printf '%s' "$text"
}

write_env_file() {
    step "Settings $ENV_FILE"
    if [[ -e $ENV_FILE ]]; then
        echo "kept $ENV_FILE as it is (edit it by hand to change the settings)"
        local from
        for from in "$BROKER_FROM" "${STORE_URL:+--store-url}" "$TOKEN_FROM"; do
            [[ -z $from ]] || warn "$from was not applied: $ENV_FILE already exists"
        done
        return
    fi
    local missing=()
    [[ -n $BROKER_URL ]] || missing+=("--broker-url-file FILE or CIS490_BROKER_URL")
    [[ -n $STORE_URL ]] || missing+=("--store-url URL")
    [[ -n $TOKEN ]] || missing+=("--token-file FILE or CIS490_WORKER_TOKEN")
    if ((${#missing[@]})); then
        local list
        list=$(printf '; %s' "${missing[@]}")
        die "$ENV_FILE does not exist yet: give ${list:2} (the worker URL from 'cis490-train acl', the store's address and its token)"
    fi
    local content
    content="# cis490-train worker settings for every cis490-worker@ instance on this host (see README, Configuration).
# Written once by install-worker.sh, which never overwrites it; restart the workers after an edit.
CIS490_BROKER_URL=$BROKER_URL
CIS490_STORE_URL=$STORE_URL
CIS490_WORKER_TOKEN=$TOKEN
CIS490_DATA_DIR=$DATA_DIR"
    write_file "$ENV_FILE" 0600 "$content" "$(mask_secrets "$content")"
    if [[ ! -f $DATA_DIR/schema.json ]]; then
        warn "no dataset at $DATA_DIR yet: copy it there (readable by $SERVICE_USER), or make the synthetic one with: sudo -u $SERVICE_USER $VENV/bin/cis490-train data synth --out $DATA_DIR"
    fi
}

# The worker template, with this install's venv, user and settings paths.
render_unit() {
    sed -e "s|/opt/cis490/venv|$VENV|g" \
        -e "s|^User=cis490$|User=$SERVICE_USER|" \
        -e "s|^Group=cis490$|Group=$SERVICE_USER|" \
        -e "s|/etc/cis490/|$ENV_DIR/|g" \
        "$UNIT_SOURCE_DIR/$WORKER_UNIT"
}

install_units() {
    step "systemd units in $UNIT_DIR"
    CHANGED=0
    local unit
    unit=$(render_unit)
    write_file "$UNIT_DIR/$WORKER_UNIT" 0644 "$unit"
    local instance dropin
    for instance in "${INSTANCES[@]}"; do
        dropin="# Written by install-worker.sh: the tiers this worker serves.
[Service]
Environment=WORKER_QUEUES=$WORKER_QUEUES"
        write_file "$UNIT_DIR/cis490-worker@$instance.service.d/$QUEUES_DROPIN" 0644 "$dropin"
    done
    local stale=()
    local dir name
    for dir in "$UNIT_DIR"/cis490-worker@*.service.d; do
        [[ -f $dir/$QUEUES_DROPIN ]] || continue
        name=${dir##*/cis490-worker@}
        name=${name%.service.d}
        [[ " ${INSTANCES[*]} " == *" $name "* ]] || stale+=("$name")
    done
    local units=("${INSTANCES[@]/#/cis490-worker@}")
    units=("${units[@]/%/.service}")
    run systemctl daemon-reload
    for name in "${stale[@]}"; do
        step "Retiring cis490-worker@$name (no longer on this host)"
        run systemctl disable --now "cis490-worker@$name.service"
        if ((DRY_RUN)) && [[ -z $PREFIX ]]; then
            echo "--- would remove $UNIT_DIR/cis490-worker@$name.service.d/$QUEUES_DROPIN"
        else
            rm -f "$UNIT_DIR/cis490-worker@$name.service.d/$QUEUES_DROPIN"
            rmdir --ignore-fail-on-non-empty "$UNIT_DIR/cis490-worker@$name.service.d"
        fi
    done
    if ((CHANGED)); then
        # Workers already running pick up the new unit (a running job is requeued); stopped ones stay stopped.
        run systemctl try-restart "${units[@]}"
    fi
    run systemctl enable --now "${units[@]}"
}

main() {
    parse_args "$@"
    read_secrets
    validate_args
    check_host
    detect_gpus
    choose_torch
    install_venv
    self_test
    create_user
    write_env_file
    install_units
    step "Done: ${INSTANCES[*]/#/cis490-worker@} serving $WORKER_QUEUES (journalctl -u 'cis490-worker@*' to follow them)"
}

main "$@"
