#!/usr/bin/env bash
# Checks that a portable x86-64 build of the kernels confines AVX2 to its run-time variants:
# VEX/EVEX-encoded instructions (AVX, AVX2, FMA, AVX-512), BMI1/BMI2, LZCNT, POPCNT and MOVBE
# appear only in functions named *_avx2 (CNNAURAL_TARGET_AVX2, csrc/common/cpu_isa.h), and
# those variants exist and use 256-bit registers. Beyond the baseline, an instruction in any
# other function could run on a CPU without it (an illegal instruction).
# Usage: scripts/check_cpu_isa.sh LIBRARY.so   (ctest runs it on the CMake library)
set -euo pipefail
lib="${1:?usage: check_cpu_isa.sh LIBRARY.so}"
objdump="${OBJDUMP:-objdump}"

"$objdump" -d --no-show-raw-insn -C "$lib" | awk '
  /^[0-9a-f]+ <.*>:$/ {
    fn = substr($0, index($0, "<") + 1); sub(/>:$/, "", fn)
    variant = fn ~ /_avx2[<(]/
    next
  }
  /^ +[0-9a-f]+:\t/ {
    split($0, parts, "\t"); insn = parts[2]; split(insn, words, " "); m = words[1]
    beyond = (m ~ /^v/ && m !~ /^ver[rw]$/) ||
             m ~ /^(andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|pext|rorx|sarx|shlx|shrx|lzcnt|popcnt|movbe)$/
    if (variant) { if (insn ~ /%ymm/) ymm[fn]++ }
    else if (beyond) { bad[fn]++; if (!(fn in first)) first[fn] = insn }
  }
  END {
    n_bad = 0
    for (f in bad) {
      n_bad++
      if (n_bad <= 20) printf("outside the AVX2 variants: %d x beyond baseline in %s (first: %s)\n", bad[f], f, first[f])
    }
    n_var = 0
    for (f in ymm) { n_var++; printf("AVX2 variant: %s (%d instructions on ymm registers)\n", f, ymm[f]) }
    if (n_bad) {
      printf("FAIL: %d functions outside the AVX2 variants use instructions beyond the baseline\n", n_bad)
      exit 1
    }
    if (!n_var) {
      print "FAIL: no AVX2 variant with 256-bit code (is the build portable? CNNAURAL_TARGET_AVX2 applied?)"
      exit 1
    }
    printf("ok: instructions beyond the x86-64 baseline only in the %d AVX2 variants\n", n_var)
  }'
