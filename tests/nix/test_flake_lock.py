#!/usr/bin/env python3
"""flake.lock must lock exactly the inputs flake.nix declares, at the verified pins.

Checks, with the Python standard library only:
  * flake.nix's `inputs` block (read by a small Nix tokenizer; cross-checked
    with `nix-instantiate` when it is installed);
  * flake.lock: version 7, one node per input and nothing else, `original` as
    the URL in flake.nix, `follows` and `flake = false` encoded as Nix does,
    canonical formatting (sorted keys, 2-space indent);
  * nix2container's own nixpkgs (node `nixpkgs_2`: flake.nix does not make
    it follow ours) is exactly the node of nix2container's flake.lock at
    the locked nix2container rev (copied below, with its source);
  * tests/nix/flake-pins.json (the verified pins, with how each was
    verified, kept in the repository): each of our inputs' `locked` is
    exactly the verified rev, narHash and lastModified.

Run: python3 tests/nix/test_flake_lock.py
Exit status:
  0  every test passed;
  1  a test failed;
  3  every test that ran passed, but a part was skipped: the cross-check
     with nix-instantiate (not installed). Count it as skipped, not as
     passed; the last lines, "SKIPPED <test>: <reason>", say which.
"""

import json
import os
import re
import shutil
import subprocess
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FLAKE_NIX = os.path.join(ROOT, "flake.nix")
FLAKE_LOCK = os.path.join(ROOT, "flake.lock")
PINS = os.path.join(ROOT, "tests", "nix", "flake-pins.json")

LOCKED_KEYS = {"lastModified", "narHash", "owner", "repo", "rev", "type"}
EXIT_PINS_SKIPPED = 3

# nix2container's nixpkgs, as nix2container locks it itself: the node
# "nixpkgs" of nlewo/nix2container flake.lock at rev
# 20d339590c3c36252514a57b0241c47bcd8a08ce (read from that commit; its
# flake.nix: inputs.nixpkgs.url = "github:NixOS/nixpkgs", no ref).
N2C_REV = "20d339590c3c36252514a57b0241c47bcd8a08ce"
N2C_NIXPKGS_NODE = {
    "locked": {
        "lastModified": 1767028467,
        "narHash": "sha256-7G+2aXClSMaTY1ogpX14CAxjRsvyVzpE0GRwL71WO7g=",
        "owner": "NixOS",
        "repo": "nixpkgs",
        "rev": "1cabc318c11299f07ca53e3cb719854682fe6eb3",
        "type": "github",
    },
    "original": {"owner": "NixOS", "repo": "nixpkgs", "type": "github"},
}
# Inputs whose own inputs flake.nix leaves unfollowed: input -> {their
# input: node name in flake.lock}. Nix names the node after the input and
# adds _2 when the name is taken.
TRANSITIVE = {"nix2container": {"nixpkgs": "nixpkgs_2"}}
TRANSITIVE_NODES = {"nixpkgs_2": N2C_NIXPKGS_NODE}


# --------------------------------------------------------------- flake.nix --
TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<indented>''(?:[^']|'(?!')|'''|''\$|''\\.)*'')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_'-]*)
  | (?P<punct>\$\{|[{}\[\]();=.:,@?!<>+*/-])
  | (?P<other>\S)
    """,
    re.S | re.X,
)


def tokenize(text):
    tokens = []
    for m in TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        tokens.append((kind, m.group()))
    return tokens


def unquote(token):
    kind, value = token
    if kind != "string":
        raise ValueError(f"expected a string, got {value!r}")
    if "${" in value:
        raise ValueError(f"interpolation is not allowed in inputs: {value}")
    return json.loads(value)


def parse_attrset(tokens, i):
    """Parse `{ a.b = <value>; ... }` starting at tokens[i] == '{'.

    Values: strings, true/false, nested attrsets. Returns (dict, next index).
    Dotted paths are expanded into nested dicts, as Nix does."""
    if tokens[i][1] != "{":
        raise ValueError(f"expected '{{' at token {i}, got {tokens[i][1]!r}")
    i += 1
    result = {}
    while tokens[i][1] != "}":
        path = [tokens[i][1]]
        if tokens[i][0] not in ("ident", "string"):
            raise ValueError(f"unexpected {tokens[i][1]!r} in inputs")
        if tokens[i][0] == "string":
            path = [unquote(tokens[i])]
        i += 1
        while tokens[i][1] == ".":
            path.append(tokens[i + 1][1])
            i += 2
        if tokens[i][1] != "=":
            raise ValueError(f"expected '=' after {'.'.join(path)}, got {tokens[i][1]!r}")
        i += 1
        if tokens[i][1] == "{":
            value, i = parse_attrset(tokens, i)
        elif tokens[i][1] in ("true", "false"):
            value = tokens[i][1] == "true"
            i += 1
        else:
            value = unquote(tokens[i])
            i += 1
        if tokens[i][1] != ";":
            raise ValueError(f"expected ';' after {'.'.join(path)}, got {tokens[i][1]!r}")
        i += 1
        target = result
        for key in path[:-1]:
            target = target.setdefault(key, {})
        if isinstance(value, dict) and isinstance(target.get(path[-1]), dict):
            target[path[-1]].update(value)
        else:
            target[path[-1]] = value
    return result, i + 1


def flake_inputs_from_text(text):
    """The `inputs = { ... };` binding at the top level of flake.nix."""
    tokens = tokenize(text)
    depth = 0
    for i, (_, value) in enumerate(tokens):
        if value in ("{", "${"):
            depth += 1
        elif value == "}":
            depth -= 1
        elif depth == 1 and value == "inputs" and tokens[i + 1][1] == "=":
            inputs, _ = parse_attrset(tokens, i + 2)
            return inputs
        elif depth == 1 and value == "inputs" and tokens[i + 1][1] == ".":
            raise ValueError("write the inputs as one `inputs = { ... };` block")
    raise ValueError("no top-level `inputs = { ... };` in flake.nix")


def normalise(raw):
    """name -> {url, flake, follows: {input: target}} from a parsed inputs block."""
    out = {}
    for name, spec in raw.items():
        if isinstance(spec, str):
            spec = {"url": spec}
        unknown = set(spec) - {"url", "flake", "inputs"}
        if unknown:
            raise ValueError(f"input {name}: unsupported attribute(s) {sorted(unknown)}")
        follows = {}
        for dep, dep_spec in spec.get("inputs", {}).items():
            if set(dep_spec) != {"follows"}:
                raise ValueError(f"input {name}.inputs.{dep}: only `follows` is supported")
            follows[dep] = dep_spec["follows"]
        out[name] = {
            "url": spec["url"],
            "flake": spec.get("flake", True),
            "follows": follows,
        }
    return out


def original_from_url(url):
    """flake.lock's `original` for a `github:owner/repo[/ref]` URL."""
    m = re.fullmatch(r"github:([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)(?:/([^?#]+))?", url)
    if not m:
        raise ValueError(f"unsupported flake URL {url!r} (only github:owner/repo[/ref])")
    original = {"owner": m.group(1), "repo": m.group(2), "type": "github"}
    if m.group(3):
        original["ref"] = m.group(3)
    return original


def load_inputs():
    with open(FLAKE_NIX, encoding="utf-8") as f:
        return normalise(flake_inputs_from_text(f.read()))


def load_lock():
    with open(FLAKE_LOCK, encoding="utf-8") as f:
        text = f.read()
    return text, json.loads(text)


# ------------------------------------------------------------------- tests --
class FlakeNixInputs(unittest.TestCase):
    def test_expected_inputs(self):
        inputs = load_inputs()
        self.assertEqual(
            sorted(inputs),
            ["advisory-db", "crane", "nix2container", "nixpkgs", "rust-overlay"],
        )
        self.assertEqual(inputs["nixpkgs"]["url"], "github:NixOS/nixpkgs/nixos-unstable")
        self.assertFalse(inputs["advisory-db"]["flake"], "advisory-db must be flake = false")
        self.assertEqual(inputs["rust-overlay"]["follows"], {"nixpkgs": "nixpkgs"})
        # nix2container's skopeo patch and vendorHash are tested against its
        # own locked nixpkgs only: it must not follow ours.
        self.assertEqual(inputs["nix2container"]["follows"], {}, "nix2container must not follow nixpkgs")
        # crane has no inputs: a follows would only earn a warning.
        self.assertEqual(inputs["crane"]["follows"], {})

    @unittest.skipUnless(shutil.which("nix-instantiate"), "nix-instantiate not installed")
    def test_parser_agrees_with_nix(self):
        out = subprocess.run(
            ["nix-instantiate", "--eval", "--strict", "--json", "-E", f"(import {FLAKE_NIX}).inputs"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.assertEqual(normalise(json.loads(out)), load_inputs())


class FlakeLock(unittest.TestCase):
    def setUp(self):
        self.inputs = load_inputs()
        self.text, self.lock = load_lock()
        self.nodes = self.lock["nodes"]

    def test_format(self):
        self.assertEqual(self.lock["version"], 7)
        self.assertEqual(self.lock["root"], "root")
        self.assertEqual(
            self.text,
            json.dumps(self.lock, indent=2, sort_keys=True) + "\n",
            "flake.lock is not in Nix's canonical form (sorted keys, 2-space indent, final newline)",
        )

    def test_one_node_per_input(self):
        root = self.nodes["root"]
        self.assertEqual(set(root), {"inputs"})
        self.assertEqual(root["inputs"], {name: name for name in self.inputs})
        # Every dependency follows ours or has none, except the transitive
        # nodes listed above.
        self.assertEqual(set(self.nodes), set(self.inputs) | {"root"} | set(TRANSITIVE_NODES))

    def test_transitive_nodes_are_the_dependencys_own(self):
        self.assertEqual(self.nodes["nix2container"]["locked"]["rev"], N2C_REV,
                         "nix2container moved: copy nixpkgs_2 again from its flake.lock at the new rev")
        for name, node in TRANSITIVE_NODES.items():
            with self.subTest(node=name):
                self.assertEqual(self.nodes[name], node)

    def test_nodes_match_flake_nix(self):
        for name, spec in self.inputs.items():
            with self.subTest(input=name):
                node = self.nodes[name]
                self.assertEqual(node["original"], original_from_url(spec["url"]))
                locked = node["locked"]
                self.assertEqual(set(locked), LOCKED_KEYS)
                self.assertEqual(locked["type"], "github")
                self.assertEqual(
                    (locked["owner"], locked["repo"]),
                    (node["original"]["owner"], node["original"]["repo"]),
                )
                self.assertRegex(locked["rev"], r"^[0-9a-f]{40}$")
                self.assertRegex(locked["narHash"], r"^sha256-[A-Za-z0-9+/]{43}=$")
                self.assertIsInstance(locked["lastModified"], int)
                if spec["flake"]:
                    self.assertNotIn("flake", node)
                else:
                    self.assertIs(node.get("flake"), False)
                follows = {dep: [target] for dep, target in spec["follows"].items()}
                follows.update(TRANSITIVE.get(name, {}))
                if follows:
                    self.assertEqual(node.get("inputs"), follows)
                else:
                    self.assertNotIn(
                        "inputs", node, f"{name} locks inputs of its own that flake.nix does not follow"
                    )
                self.assertEqual(
                    set(node) - {"inputs", "flake"},
                    {"locked", "original"},
                )


@unittest.skipUnless(
    os.path.isfile(PINS),
    f"{PINS} not present: pins not compared",
)
class FlakeLockPins(unittest.TestCase):
    def test_locked_equals_verified_pins(self):
        with open(PINS, encoding="utf-8") as f:
            pins = json.load(f)
        _, lock = load_lock()
        for name in load_inputs():
            with self.subTest(input=name):
                self.assertIn(name, pins, f"no verified pin for {name}")
                pin = pins[name]
                locked = lock["nodes"][name]["locked"]
                expected = {key: pin[key] for key in LOCKED_KEYS}
                self.assertEqual(locked, expected)
                self.assertEqual(lock["nodes"][name].get("flake", True), pin.get("flake", True))


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    if not result.wasSuccessful():
        raise SystemExit(1)
    if result.skipped:
        for test, reason in result.skipped:
            print(f"SKIPPED {test.id()}: {reason}")
        raise SystemExit(EXIT_PINS_SKIPPED)
