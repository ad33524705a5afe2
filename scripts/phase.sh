# Sourced by .ci/run and scripts/check: `phase NAME` ends the phase before, saying its seconds, and
# starts NAME; `phase` alone ends the last. The lines read "== NAME" and "== NAME: 12.3 s", so that
# the next slowdown shows where it is.
_phase_name=""
_phase_started=""

# The time now, in seconds, with a decimal point whatever the locale.
now() {
  local LC_ALL=C
  echo "$EPOCHREALTIME"
}

# "== LABEL: 12.3 s", the seconds since STARTED (from `now`).
say_seconds() {
  LC_ALL=C awk -v label="$1" -v started="$2" -v now="$(now)" 'BEGIN {printf "== %s: %.1f s\n", label, now - started}'
}

phase() {
  if [ -n "$_phase_name" ]; then
    say_seconds "$_phase_name" "$_phase_started"
  fi
  _phase_name="${1:-}"
  _phase_started=$(now)
  if [ -n "$_phase_name" ]; then
    echo "== $_phase_name"
  fi
}
