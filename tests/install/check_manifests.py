#!/usr/bin/env python3
"""Checks the firmware manifests: PlatformIO library.json, Zephyr zephyr/module.yml,
ESP-IDF idf_component.yml.

Each must parse (json / yaml), carry the keys its tool needs, state the version of the
top-level project(VERSION), and list only files and folders that exist (patterns must
match at least one file). Each must also build exactly the core and bare-metal port
sources (core/src/*.cpp, port/baremetal/src/*.cpp) with their three include folders.
usage: check_manifests.py SOURCE_DIR
"""
import fnmatch
import glob
import json
import os
import re
import sys

import yaml  # Debian python3-yaml

root = os.path.abspath(sys.argv[1])
errors = []


def err(msg):
    errors.append(msg)


def exists(rel, what):
    if not os.path.exists(os.path.join(root, rel)):
        err("%s: %s does not exist" % (what, rel))


def project_version():
    text = open(os.path.join(root, "CMakeLists.txt")).read()
    m = re.search(r"project\(picopay VERSION ([0-9.]+)", text)
    return m.group(1)


def all_files():
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".") and x != "node_modules"
                   and not x.startswith("build")]
        for f in files:
            out.append(os.path.relpath(os.path.join(d, f), root))
    return out


FILES = all_files()
WANT_SOURCES = sorted(os.path.relpath(p, root) for p in
                      glob.glob(os.path.join(root, "core/src/*.cpp")) +
                      glob.glob(os.path.join(root, "port/baremetal/src/*.cpp")))
WANT_INCLUDES = {"core/include", "port/include", "port/baremetal/include"}
version = project_version()

# --- PlatformIO library.json -----------------------------------------------------------
try:
    lib = json.load(open(os.path.join(root, "library.json")))
except (OSError, ValueError) as e:
    err("library.json: %s" % e)
    lib = None
if lib is not None:
    for k in ("name", "version", "description", "frameworks", "platforms", "build"):
        if k not in lib:
            err("library.json: no %s" % k)
    if lib.get("version") != version:
        err("library.json: version %r, project(VERSION) %s" % (lib.get("version"), version))
    b = lib.get("build", {})
    exists(b.get("srcDir", "."), "library.json build.srcDir")
    exists(b.get("includeDir", "include"), "library.json build.includeDir")
    incs = {f[2:] for f in b.get("flags", []) if f.startswith("-I")}
    for i in incs:
        exists(i, "library.json build.flags -I")
    if incs | {b.get("includeDir")} != WANT_INCLUDES:
        err("library.json: include folders %s, want %s" % (sorted(incs), sorted(WANT_INCLUDES)))
    for h in lib.get("headers", []):
        if not any(os.path.exists(os.path.join(root, i, h)) for i in WANT_INCLUDES):
            err("library.json headers: %s not found" % h)
    for p in lib.get("export", {}).get("include", []):
        exists(p, "library.json export.include")
    # srcFilter: "+<glob>" / "-<glob>", applied in order, relative to srcDir.
    selected = set()
    for rule in b.get("srcFilter", []):
        m = re.fullmatch(r"([+-])<(.*)>", rule)
        if not m:
            err("library.json srcFilter: bad rule %r" % rule)
            continue
        hits = {f for f in FILES if fnmatch.fnmatch(f, m.group(2))}
        if m.group(1) == "+":
            if not hits:
                err("library.json srcFilter: %s matches no file" % rule)
            selected |= hits
        else:
            selected -= hits
    got = sorted(f for f in selected if f.endswith((".c", ".cpp")))
    if got != WANT_SOURCES:
        err("library.json builds %s, want %s" % (got, WANT_SOURCES))

# --- Zephyr zephyr/module.yml ----------------------------------------------------------
try:
    mod = yaml.safe_load(open(os.path.join(root, "zephyr/module.yml")))
except (OSError, yaml.YAMLError) as e:
    err("zephyr/module.yml: %s" % e)
    mod = None
if mod is not None:
    if not isinstance(mod, dict) or "build" not in mod:
        err("zephyr/module.yml: no build")
    else:
        b = mod["build"]
        if "cmake" in b:
            exists(b["cmake"], "zephyr/module.yml build.cmake")
            exists(os.path.join(b["cmake"], "CMakeLists.txt"), "zephyr/module.yml build.cmake")
        else:
            err("zephyr/module.yml: no build.cmake")
        if "kconfig" in b:
            kpath = os.path.join(root, b["kconfig"])
            if not os.path.isfile(kpath):
                err("zephyr/module.yml build.kconfig: %s does not exist" % b["kconfig"])
            elif not re.search(r"^config PICOPAY$", open(kpath).read(), re.M):
                err("zephyr Kconfig: no 'config PICOPAY'")
        zpath = os.path.join(root, b.get("cmake", "zephyr"), "CMakeLists.txt")
        zc = open(zpath).read() if os.path.isfile(zpath) else ""
        if "CONFIG_PICOPAY" not in zc or "zephyr_library" not in zc:
            err("zephyr/CMakeLists.txt: no zephyr_library under CONFIG_PICOPAY")

# --- ESP-IDF idf_component.yml ---------------------------------------------------------
try:
    idf = yaml.safe_load(open(os.path.join(root, "idf_component.yml")))
except (OSError, yaml.YAMLError) as e:
    err("idf_component.yml: %s" % e)
    idf = None
if idf is not None:
    if str(idf.get("version")) != version:
        err("idf_component.yml: version %r, project(VERSION) %s" % (idf.get("version"), version))
    if "idf" not in idf.get("dependencies", {}):
        err("idf_component.yml: no idf dependency")
    for pat in idf.get("files", {}).get("include", []):
        rx = fnmatch.translate(pat.replace("**/", "*"))
        if not any(re.match(rx, f) for f in FILES):
            err("idf_component.yml files.include: %s matches no file" % pat)
    top = open(os.path.join(root, "CMakeLists.txt")).read()
    m = re.search(r"if\(ESP_PLATFORM\)\s*include\(\$\{CMAKE_CURRENT_LIST_DIR\}/([^)]+)\)", top)
    if not m:
        err("CMakeLists.txt: no ESP_PLATFORM branch including the component")
    else:
        exists(m.group(1), "CMakeLists.txt ESP_PLATFORM include")
        comp = open(os.path.join(root, m.group(1))).read()
        if "idf_component_register" not in comp:
            err("%s: no idf_component_register" % m.group(1))

# Both CMake fragments glob the same two source folders and name the three include dirs.
for frag in ("zephyr/CMakeLists.txt", "packaging/esp-idf/component.cmake"):
    text = open(os.path.join(root, frag)).read()
    for needed in ("core/src/*.cpp", "port/baremetal/src/*.cpp") + tuple(sorted(WANT_INCLUDES)):
        if needed not in text:
            err("%s: does not name %s" % (frag, needed))

if errors:
    for e in errors:
        print("FAIL: " + e, file=sys.stderr)
    sys.exit(1)
print("manifests ok: library.json, zephyr/module.yml, idf_component.yml (version %s, %d sources)"
      % (version, len(WANT_SOURCES)))
