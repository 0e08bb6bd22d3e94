#!/bin/sh
# The `attn` program as a user meets it: help, bad flags (usage, exit 2), the walk-through's numbers.
attn=$1
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
expect_rc() {  # expected-rc description command...
  want=$1; what=$2; shift 2
  "$@" > /tmp/attn_cli_out.$$ 2>&1; rc=$?
  if [ "$rc" = "$want" ]; then ok; else bad "$what: exit $rc, expected $want"; cat /tmp/attn_cli_out.$$; fi
}
expect_rc 0 "attn --help" "$attn" --help
expect_rc 2 "attn with no command" "$attn"
expect_rc 2 "unknown command" "$attn" frobnicate
for c in demo score bench imdb translate; do
  expect_rc 0 "attn $c --help" "$attn" $c --help
  grep -q "usage: attn $c" /tmp/attn_cli_out.$$ || bad "attn $c --help prints no usage"
done
expect_rc 2 "demo --bogus" "$attn" demo --bogus
grep -q "usage: attn demo" /tmp/attn_cli_out.$$ || bad "bad flag prints no usage"
expect_rc 2 "demo --batch abc" "$attn" demo --batch abc
expect_rc 2 "demo --batch 0" "$attn" demo --batch 0
expect_rc 2 "demo --heads 3 (does not divide 128)" "$attn" demo --heads 3
expect_rc 2 "demo --batch (missing value)" "$attn" demo --batch
expect_rc 2 "score extra argument" "$attn" score extra
# a value the command rejects after parsing: the usage still shows the default, not the rejected value
expect_rc 2 "demo --batch 0 (usage)" "$attn" demo --batch 0
grep -q -- "--batch N.*(default 32)" /tmp/attn_cli_out.$$ || bad "usage after --batch 0 lacks '(default 32)'"
expect_rc 2 "translate train --dropout 1.5" "$attn" translate train --model transformer --dropout 1.5
grep -q -- "--dropout X.*(default 0.1)" /tmp/attn_cli_out.$$ || bad "usage after --dropout 1.5 lacks '(default 0.1)'"

# The walk-through's figures (SPEC §1.8).
expect_rc 0 "attn score" "$attn" score --no-color
for want in "= 927" "= 397" "= 148" "= 929" "0.1192" "0.8808" "3.8808, 4.0728, 45.2642" "= inf" "NaN"; do
  grep -q -- "$want" /tmp/attn_cli_out.$$ || bad "attn score output lacks '$want'"
done
# The shapes tour.
expect_rc 0 "attn demo" "$attn" demo
for want in "(32, 10, 128)" "(32, 10, 10)" "(32, 4, 10, 10)"; do
  grep -qF -- "$want" /tmp/attn_cli_out.$$ || bad "attn demo output lacks '$want'"
done
rm -f /tmp/attn_cli_out.$$
echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
