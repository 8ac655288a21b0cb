#!/usr/bin/env bash
# Writes the firmware size report and fails if the image links a heap allocator.
#
#   size-report.sh <image.elf> <image.map> <out.json> <nm> <size>
#
# flash_core  : text+rodata of the core (libpicopay_core.a's input sections kept in the
#               image, from the link map)
# flash_total : core + libsecp256k1 + port (libpicopay_port_baremetal.a)
# flash_image : everything in flash (startup, app, newlib pieces, .data's load image)
# ram_total   : data+bss of the image (the stack is reserved separately: ram_stack)
# stack_sign and instructions_per_payment come from the QEMU run (run-qemu-test.sh
# merges them in).
set -euo pipefail
elf=$1 map=$2 out=$3 nm=$4 size=$5

# 1. No heap: none of these may be linked at all.
heap=$("$nm" "$elf" | awk '$2 ~ /^[TtWw]$/ && $3 ~ /^(malloc|free|calloc|realloc|_malloc_r|_free_r|_calloc_r|_realloc_r|_Znwj|_Znaj|_ZdlPv|_ZdaPv|_ZdlPvj|_ZnwjRKSt9nothrow_t)$/ {print $3}')
if [ -n "$heap" ]; then
  echo "size-report: the image links a heap allocator: $heap" >&2
  exit 1
fi

# 2. Flash per library from the link map: input sections of the output sections that
#    live in flash (.text, .rodata, .ARM.exidx...), attributed to their archive.
awk '
  /^Linker script and memory map/ { inmap = 1; next }
  !inmap { next }
  /^\.text|^\.rodata|^\.isr_vector|^\.ARM|^\.init_array|^\.fini_array|^\.preinit_array/ { out = "flash"; next }
  /^\.data|^\.bss|^\.flashsim|^\.stack|^\/DISCARD\// { out = "other"; next }
  /^[^ ]/ { out = "other"; next }
  out != "flash" { next }
  {
    # An input section line: " .sec 0xADDR 0xSIZE file" (name may be on its own line).
    line = $0
    if (line ~ /^ \.[^ ]+$/) { pending = 1; next }
    n = split(line, f, /[ \t]+/)
    addr = ""; sz = ""; file = ""
    for (i = 1; i <= n; i++) {
      if (f[i] ~ /^0x[0-9a-f]+$/) { if (addr == "") addr = f[i]; else if (sz == "") { sz = f[i]; file = f[i+1]; break } }
    }
    if (sz == "" || file == "") { pending = 0; next }
    if (line !~ /^ \./ && !pending) next
    pending = 0
    v = strtonum_hex(sz)
    if (file ~ /libpicopay_core\.a/) core += v
    else if (file ~ /libsecp256k1\.a/) secp += v
    else if (file ~ /libpicopay_port_baremetal\.a/) port += v
    else rest += v
  }
  function strtonum_hex(s,   i, c, r) {
    r = 0; s = tolower(substr(s, 3))
    for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; r = r * 16 + c }
    return r
  }
  END { printf "%d %d %d %d\n", core, secp, port, rest }
' "$map" > "$out.tmp"
read -r core secp port rest < "$out.tmp"
rm -f "$out.tmp"

# 3. Section totals of the image (Berkeley: text includes rodata and .data's load image).
read -r text data bss < <("$size" -A "$elf" | awk '
  $1 == ".data" {d += $2} $1 == ".bss" {b += $2}
  $1 ~ /^\.(isr_vector|text|rodata|ARM\.extab|ARM\.exidx|init_array|fini_array|preinit_array)$/ {t += $2}
  END {printf "%d %d %d\n", t, d, b}')
sstack=$("$nm" "$elf" | awk '$3 == "_sstack" {print $1}')
estack=$("$nm" "$elf" | awk '$3 == "_estack" {print $1}')
stack=0
if [ -n "$sstack" ] && [ -n "$estack" ]; then stack=$(( 16#$estack - 16#$sstack )); fi

cat > "$out" <<JSON
{
  "flash_core": $core,
  "flash_secp256k1": $secp,
  "flash_port": $port,
  "flash_total": $((core + secp + port)),
  "flash_image": $((text + data)),
  "ram_data": $data,
  "ram_bss": $bss,
  "ram_total": $((data + bss)),
  "ram_stack_reserved": $stack
}
JSON
cp "$out" "${out%.json}.static.json"
echo "size-report: flash core $core, +secp256k1 $secp, +port $port = $((core + secp + port)) B; image $((text + data)) B; RAM data+bss $((data + bss)) B -> $out"
