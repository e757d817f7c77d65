# shellcheck shell=bash
# scripts/no_service_starts.sh — sourced by scripts/test.sh and .ci/run around their apt-get install.
#
#   source scripts/no_service_starts.sh
#   forbid_service_starts; trap restore_service_policy EXIT
#   apt-get install ...
#   restore_service_policy; trap - EXIT
#
# Packages with services (prometheus: a server on 0.0.0.0:9090; redis-server: a system redis) must
# not start them: the tests need only promtool and the redis-server binary, which the tests run on their
# own port. Debian's maintainer scripts (invoke-rc.d, deb-systemd-invoke) ask /usr/sbin/policy-rc.d
# first, and 101 means "not allowed". One that already says 101 (Docker images ship one) is left
# alone; otherwise ours is put in place for the install and the previous state restored after.
policy_rc=/usr/sbin/policy-rc.d
policy_rc_saved=""  # the file ours replaced, if any
policy_rc_ours=0
forbid_service_starts() {
  if [[ -x $policy_rc ]]; then
    local verdict=0
    "$policy_rc" prometheus start >/dev/null 2>&1 || verdict=$?
    ((verdict == 101)) && return 0
  fi
  if [[ -e $policy_rc ]]; then
    policy_rc_saved=$(mktemp "$policy_rc.netpool-ci.XXXXXX")
    cp -p "$policy_rc" "$policy_rc_saved"
  fi
  printf '#!/bin/sh\n# netpool .ci/run, while it installs packages: no service may start.\nexit 101\n' \
    >"$policy_rc.netpool-ci"
  chmod 755 "$policy_rc.netpool-ci"
  mv -f "$policy_rc.netpool-ci" "$policy_rc"
  policy_rc_ours=1
}
restore_service_policy() {
  ((policy_rc_ours)) || return 0
  if [[ -n $policy_rc_saved ]]; then
    mv -f "$policy_rc_saved" "$policy_rc"
  else
    rm -f "$policy_rc"
  fi
  policy_rc_ours=0
}
