#!/usr/bin/env bash
# Install `edge-agent run` as a systemd service on Raspberry Pi OS, without Greengrass.
#
#   sudo deploy/systemd/install.sh [--secret-file FILE] [--package SPEC] [--enable]
#
# What it sets up (docs/raspberry-pi.md, "Without Greengrass"):
#   - the system user edge-agent (no login, no home of its own) in the i2c group;
#   - /opt/edge-agent/venv: a venv of the Pi's python3 with edge-agent[i2c,mqtt]
#     (--package SPEC installs SPEC instead, e.g. a wheel; default: this checkout);
#   - /opt/edge-agent/state (0700, edge-agent): episode state and the outbox;
#   - /etc/edge-agent (0750, root:edge-agent) with config.ini (0640) from the template,
#     never overwriting one that is there;
#   - the ServiceNow secret /etc/edge-agent/servicenow.json (--secret-file FILE copies FILE)
#     and any private key /etc/edge-agent/*.key: 0600, owned by edge-agent;
#   - /etc/systemd/system/edge-agent.service, then systemctl daemon-reload
#     (--enable also enables and starts it).
# Running it again is safe: it changes owners and modes back, and keeps config and secret.
#
# --root DIR (or DESTDIR=DIR) installs into DIR as a system image: users and groups go
# into DIR/etc/passwd and DIR/etc/group, no venv is built (--no-venv) and systemctl
# is not called. The tests use it.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CHECKOUT="$(cd "$HERE/../.." && pwd)"
ROOT="${DESTDIR:-}"
PACKAGE=""
SECRET_SOURCE=""
VENV_WANTED=1
ENABLE=0

USER_NAME=edge-agent
PREFIX=/opt/edge-agent
STATE_DIR=$PREFIX/state
VENV=$PREFIX/venv
CONFIG_DIR=/etc/edge-agent
SECRET=$CONFIG_DIR/servicenow.json
UNIT=/etc/systemd/system/edge-agent.service

die() {
    echo "install.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root takes a folder}"; shift 2 ;;
        --secret-file) SECRET_SOURCE="${2:?--secret-file takes a file}"; shift 2 ;;
        --package) PACKAGE="${2:?--package takes a pip requirement}"; shift 2 ;;
        --no-venv) VENV_WANTED=0; shift ;;
        --enable) ENABLE=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown option $1 (--help lists them)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run it as root (sudo): it creates a system user and writes /etc"
if [ -n "$ROOT" ]; then
    ROOT="$(cd "$ROOT" && pwd)" || die "--root $ROOT is not a folder"
    [ -f "$ROOT/etc/passwd" ] && [ -f "$ROOT/etc/group" ] ||
        die "--root $ROOT has no etc/passwd and etc/group (a system image has them)"
    VENV_WANTED=0
    ENABLE=0
fi
if [ -n "$SECRET_SOURCE" ]; then
    [ -r "$SECRET_SOURCE" ] || die "cannot read --secret-file $SECRET_SOURCE"
fi
# Checked before anything changes: a venv needs the OS's python3-venv.
if [ "$VENV_WANTED" = 1 ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    die "python3 cannot make a venv here: sudo apt install python3-venv, then run this again"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# useradd/groupadd act on $ROOT's own files through --root (they chroot there).
on_root=()
[ -n "$ROOT" ] && on_root=(--root "$ROOT")

has_group() { grep -q "^$1:" "$ROOT/etc/group"; }
has_user() { grep -q "^$1:" "$ROOT/etc/passwd"; }

# Raspberry Pi OS has the i2c group (udev gives it /dev/i2c-*); another OS may not.
if ! has_group i2c; then
    groupadd "${on_root[@]}" --system i2c
    echo "created the group i2c: make sure /dev/i2c-* belongs to it (Raspberry Pi OS's udev does)"
fi
if has_user "$USER_NAME"; then
    usermod "${on_root[@]}" --append --groups i2c "$USER_NAME"
else
    useradd "${on_root[@]}" --system --user-group --groups i2c --home-dir "$PREFIX" \
        --no-create-home --shell /usr/sbin/nologin --comment "edge agent" "$USER_NAME"
fi
# Numbers, not names: under --root the user exists only in $ROOT/etc/passwd.
uid="$(awk -F: -v u="$USER_NAME" '$1 == u { print $3 }' "$ROOT/etc/passwd")"
gid="$(awk -F: -v u="$USER_NAME" '$1 == u { print $4 }' "$ROOT/etc/passwd")"

install -d -m 0755 -o 0 -g 0 "$ROOT$PREFIX"
install -d -m 0700 -o "$uid" -g "$gid" "$ROOT$STATE_DIR"
chown -R "$uid:$gid" "$ROOT$STATE_DIR"
install -d -m 0750 -o 0 -g "$gid" "$ROOT$CONFIG_DIR"
if [ ! -e "$ROOT$CONFIG_DIR/config.ini" ]; then
    install -m 0640 -o 0 -g "$gid" "$HERE/config.ini" "$ROOT$CONFIG_DIR/config.ini"
    echo "wrote $CONFIG_DIR/config.ini: fill in the CHANGE-ME values"
else
    chown "0:$gid" "$ROOT$CONFIG_DIR/config.ini"
    chmod 0640 "$ROOT$CONFIG_DIR/config.ini"
fi
if [ -n "$SECRET_SOURCE" ]; then
    install -m 0600 -o "$uid" -g "$gid" "$SECRET_SOURCE" "$ROOT$SECRET"
fi
for private in "$ROOT$SECRET" "$ROOT$CONFIG_DIR"/*.key; do
    [ -e "$private" ] || continue
    chown "$uid:$gid" "$private"
    chmod 0600 "$private"
done
[ -e "$ROOT$SECRET" ] ||
    echo "no $SECRET yet: write {\"username\": ..., \"password\": ...} there (or rerun with --secret-file FILE)"
install -d -m 0755 "$(dirname "$ROOT$UNIT")"
install -m 0644 -o 0 -g 0 "$HERE/edge-agent.service" "$ROOT$UNIT"

if [ "$VENV_WANTED" = 1 ]; then
    # System site packages: the Sense HAT library's RTIMU comes from the OS (python3-sense-hat).
    [ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade "${PACKAGE:-$CHECKOUT[i2c,mqtt]}"
    echo "installed $("$VENV/bin/edge-agent" --version) in $VENV"
fi

if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
    if [ "$ENABLE" = 1 ]; then
        systemctl enable --now edge-agent.service
        echo "started: journalctl -u edge-agent -f"
        exit 0
    fi
fi
echo "next: edit $CONFIG_DIR/config.ini, then: sudo systemctl enable --now edge-agent;" \
    "logs: journalctl -u edge-agent -f"
