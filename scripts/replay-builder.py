#!/usr/bin/env python3
"""Replays the Dockerfile's builder stage on this machine, without a
container engine, and fails if a step fails or the binary does not come out.

The builder image is a Debian 12 image with Rust; so is the machine CI runs
on. The replay reads the Dockerfile, picks the target stage (default
`builder`) and the stages it starts from (`FROM <stage>`), and follows their
instructions in a scratch directory:

- WORKDIR: a container path, mapped to the same path under the stage's
  scratch root; RUN runs there.
- COPY: from the build context as Docker sends it (.dockerignore applied,
  modification times kept), or `--from=<stage>` out of that stage's scratch
  root (the stage is replayed first). `--chown`/`--chmod` are not applied:
  the replay runs as the invoking user.
- ENV and ARG (with defaults): set for the RUN lines that follow.
- RUN: `/bin/sh -c` with the shell form, directly with the exec form.
- FROM an image rather than a stage: this machine stands in for it; the
  script warns when the image's Rust version or Debian release differs.

Anything else in a replayed stage (ADD, SHELL, USER, RUN --mount, ...) fails
the replay rather than being skipped silently, so a Dockerfile change that
the replay cannot follow is noticed.

Differences from a container build, on purpose: RUN lines see the host's
cargo home (cargo's registry cache and installed tools are shared with the
machine, as the image's /usr/local/cargo is with its layers), and cargo's
`target` directory under each WORKDIR is a link to a directory kept between
runs (REPLAY_TARGET_DIR), so a second replay compiles only what changed. RUN
lines that name an absolute path inside a WORKDIR are refused: they would
write outside the scratch directory.

Afterwards every file that later stages copy out of the target stage
(`COPY --from=builder ...`) must exist, and each executable among them must
run `--version`.

Usage: scripts/replay-builder.py [--dockerfile Dockerfile] [--stage builder]
Environment: REPLAY_DIR (scratch, default ~/.cache/oauth-broker/replay),
REPLAY_TARGET_DIR (cargo target kept between runs, default
~/.cache/oauth-broker/replay-target).
"""

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "oauth-broker"


class ReplayError(Exception):
    pass


# --------------------------------------------------------------------------
# Dockerfile parsing
# --------------------------------------------------------------------------


class Instruction:
    def __init__(self, line_no, keyword, args):
        self.line_no = line_no
        self.keyword = keyword.upper()
        self.args = args

    def __repr__(self):
        return f"line {self.line_no}: {self.keyword} {self.args}"


class Stage:
    def __init__(self, index, base, name, line_no):
        self.index = index
        self.base = base
        self.name = name
        self.line_no = line_no
        self.instructions = []


def parse_dockerfile(text):
    """Logical instructions (continuations joined, comments dropped)."""
    lines = text.splitlines()
    instructions = []
    buf, start = "", None
    for no, raw in enumerate(lines, 1):
        stripped = raw.strip()
        # Comment lines (also inside a continuation) and blank lines.
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if start is None:
            start = no
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        if buf.strip():
            keyword, _, rest = buf.strip().partition(" ")
            instructions.append(Instruction(start, keyword, rest.strip()))
        buf, start = "", None
    if buf.strip():
        keyword, _, rest = buf.strip().partition(" ")
        instructions.append(Instruction(start, keyword, rest.strip()))
    return instructions


def split_stages(instructions):
    global_args = {}
    stages = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.args.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(len(stages), base, name, ins.line_no))
        elif not stages:
            if ins.keyword == "ARG":
                name, _, default = ins.args.partition("=")
                global_args[name.strip()] = default
            else:
                raise ReplayError(f"{ins}: only ARG may come before the first FROM")
        else:
            stages[-1].instructions.append(ins)
    return stages, global_args


def find_stage(stages, ref):
    for s in stages:
        if s.name == ref or str(s.index) == ref:
            return s
    return None


def expand(text, env):
    """${VAR}, $VAR, ${VAR:-default} as Dockerfile instructions expand them."""

    def repl(m):
        name = m.group(1) or m.group(3)
        default = m.group(2)
        value = env.get(name)
        if value in (None, "") and default is not None:
            return default
        return value or ""

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", repl, text)


def parse_env(args):
    """ENV a=b c="d e" or ENV a b."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: args.split(None, 1)[1] if len(words) > 1 else ""}
    out = {}
    for w in words:
        k, sep, v = w.partition("=")
        if not sep:
            raise ReplayError(f"ENV: cannot parse {args!r}")
        out[k] = v
    return out


def split_flags(args):
    """Leading --flag=value words of COPY/RUN, and the rest."""
    flags = {}
    rest = args
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        k, _, v = word[2:].partition("=")
        flags[k] = v
        rest = rest.lstrip()
    return flags, rest


# --------------------------------------------------------------------------
# The build context as Docker sends it
# --------------------------------------------------------------------------


def pattern_regex(pattern):
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif c == "*":
            out += "[^/]*"
            i += 1
        elif c == "?":
            out += "[^/]"
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(c)
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("^"):
                    body = "^" + body[1:]
                out += "[" + body + "]"
                i = end + 1
        elif c == "\\" and i + 1 < len(pattern):
            out += re.escape(pattern[i + 1])
            i += 2
        else:
            out += re.escape(c)
            i += 1
    return re.compile("^" + out + "$")


def load_dockerignore(context):
    rules = []
    path = context / ".dockerignore"
    if not path.exists():
        return rules
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
        line = os.path.normpath(line).lstrip("/")
        if line in ("", "."):
            continue
        rules.append((pattern_regex(line), exception, line))
    return rules


def excluded(rel, rules):
    """Docker's rule: the last pattern matching the path or a parent wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for regex, exception, _ in rules:
        if any(regex.match(p) for p in prefixes):
            result = not exception
    return result


def context_files(context, rules):
    """Relative paths of every file and symlink in the context."""
    has_exceptions = any(exc for _, exc, _ in rules)
    files = []
    for dirpath, dirnames, filenames in os.walk(context):
        rel_dir = os.path.relpath(dirpath, context)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            full = Path(dirpath) / d
            if full.is_symlink():
                if not excluded(rel, rules):
                    files.append(rel)
                continue
            if excluded(rel, rules) and not has_exceptions:
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            rel = f"{rel_dir}/{f}" if rel_dir else f
            if not excluded(rel, rules):
                files.append(rel)
    return files


def copy_entry(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst)


# --------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------


class Replay:
    def __init__(self, dockerfile, context, scratch, target_dir):
        self.dockerfile = dockerfile
        self.context = context
        self.scratch = scratch
        self.target_dir = target_dir
        self.stages, self.global_args = split_stages(parse_dockerfile(dockerfile.read_text()))
        self.rules = load_dockerignore(context)
        self._context_files = None
        self.done = {}  # stage index -> (root, workdir, env)
        self.timings = []

    def context_listing(self):
        if self._context_files is None:
            self._context_files = context_files(self.context, self.rules)
        return self._context_files

    def host_path(self, root, container_path):
        return root / container_path.lstrip("/")

    def replay(self, stage):
        if stage.index in self.done:
            return self.done[stage.index]
        label = stage.name or str(stage.index)
        root = self.scratch / "stages" / label
        parent = find_stage(self.stages, stage.base)
        if parent is not None:
            p_root, workdir, env = self.replay(parent)
            print(f"== stage {label}: from stage {parent.name or parent.index}", flush=True)
            if root.exists():
                shutil.rmtree(root)
            shutil.copytree(p_root, root, symlinks=True)
            env = dict(env)
            workdirs = set(self.workdirs_of(parent))
        else:
            print(f"== stage {label}: from {stage.base}, played by this machine", flush=True)
            self.check_base_image(stage.base)
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            workdir, env = "/", {}
            workdirs = set()
        for ins in stage.instructions:
            kw = ins.keyword
            if kw == "WORKDIR":
                path = expand(ins.args, env)
                workdir = path if path.startswith("/") else os.path.join(workdir, path)
                self.host_path(root, workdir).mkdir(parents=True, exist_ok=True)
                self.link_target(root, workdir)
                workdirs.add(workdir)
                print(f"-- {ins.line_no}: WORKDIR {workdir}", flush=True)
            elif kw == "ENV":
                env.update({k: expand(v, env) for k, v in parse_env(ins.args).items()})
            elif kw == "ARG":
                name, sep, default = ins.args.partition("=")
                name = name.strip()
                if sep:
                    env[name] = expand(default.strip().strip('"'), env)
                elif name in self.global_args:
                    env[name] = self.global_args[name]
            elif kw == "COPY":
                self.copy(ins, root, workdir, env)
            elif kw == "RUN":
                self.run(ins, root, workdir, env, workdirs)
            elif kw in ("LABEL", "EXPOSE", "STOPSIGNAL"):
                pass  # metadata only
            else:
                raise ReplayError(f"{ins}: the replay cannot follow {kw}")
        self.workdirs_by_stage = getattr(self, "workdirs_by_stage", {})
        self.workdirs_by_stage[stage.index] = workdirs
        self.done[stage.index] = (root, workdir, env)
        return self.done[stage.index]

    def workdirs_of(self, stage):
        return getattr(self, "workdirs_by_stage", {}).get(stage.index, set())

    def link_target(self, root, workdir):
        """Cargo's target directory under WORKDIR, kept between runs."""
        link = self.host_path(root, workdir) / "target"
        if link.is_symlink() or link.exists():
            return
        self.target_dir.mkdir(parents=True, exist_ok=True)
        os.symlink(self.target_dir, link)

    def check_base_image(self, image):
        m = re.match(r"^(?:docker\.io/)?(?:library/)?rust:(\d+)(?:\.(\d+))?(?:\.\d+)?-(\w+)$", image)
        if not m:
            raise ReplayError(f"FROM {image}: the replay stands in only for Rust images")
        release = m.group(3)
        debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
        if release != "bookworm" or not debian.startswith("12"):
            print(f"warning: FROM {image} but this machine runs Debian {debian}", file=sys.stderr)
        out = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout
        have = re.search(r"rustc (\d+)\.(\d+)", out)
        if m.group(2) and have and (have.group(1), have.group(2)) != (m.group(1), m.group(2)):
            print(
                f"warning: FROM {image} but this machine has {out.strip()}; "
                "the replay compiles with the latter",
                file=sys.stderr,
            )

    def copy(self, ins, root, workdir, env):
        flags, rest = split_flags(ins.args)
        unknown = set(flags) - {"from", "chown", "chmod", "link"}
        if unknown:
            raise ReplayError(f"{ins}: the replay cannot follow COPY --{', --'.join(sorted(unknown))}")
        if rest.startswith("["):
            words = json.loads(rest)
        else:
            words = shlex.split(rest)
        words = [expand(w, env) for w in words]
        if len(words) < 2:
            raise ReplayError(f"{ins}: COPY needs a source and a destination")
        *sources, dest = words
        dest_container = dest if dest.startswith("/") else os.path.join(workdir, dest)
        dest_host = self.host_path(root, dest_container)
        many = len(sources) > 1 or dest.endswith("/") or dest in (".", "./")
        print(f"-- {ins.line_no}: COPY {ins.args}", flush=True)

        if "from" in flags:
            src_stage = find_stage(self.stages, flags["from"])
            if src_stage is None:
                raise ReplayError(f"{ins}: --from={flags['from']} is not a stage of this Dockerfile")
            src_root = self.replay(src_stage)[0]
            for src in sources:
                path = self.host_path(src_root, src)
                if not (path.exists() or path.is_symlink()):
                    raise ReplayError(f"{ins}: {src} does not exist in stage {flags['from']}")
                self.copy_path(path, dest_host, many)
            return

        listing = self.context_listing()
        for src in sources:
            src = os.path.normpath(src).lstrip("/")
            if src == ".":
                matched = listing
                base = ""
            else:
                regex = pattern_regex(src)
                matched = [f for f in listing if regex.match(f) or f.startswith(src + "/")]
                base = None
            if not matched:
                raise ReplayError(f"{ins}: {src} is not in the build context (or .dockerignore excludes it)")
            for rel in matched:
                if base == "":
                    target = dest_host / rel
                else:
                    # A directory source copies its contents; a file goes to
                    # dest/ (or to dest itself when it is the one source).
                    top = next(
                        (m for m in [src] if rel == m or rel.startswith(m + "/")),
                        None,
                    )
                    if top is not None and rel != top:
                        target = dest_host / os.path.relpath(rel, top)
                    elif many:
                        target = dest_host / os.path.basename(rel)
                    else:
                        target = dest_host
                copy_entry(self.context / rel, target)

    def copy_path(self, src, dest_host, many):
        if src.is_dir() and not src.is_symlink():
            dest_host.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dest_host, symlinks=True, dirs_exist_ok=True)
        else:
            copy_entry(src, dest_host / src.name if many else dest_host)

    def run(self, ins, root, workdir, env, workdirs):
        flags, rest = split_flags(ins.args)
        if flags:
            raise ReplayError(f"{ins}: the replay cannot follow RUN --{', --'.join(sorted(flags))}")
        for wd in workdirs | {workdir}:
            if wd != "/" and re.search(r"(^|[\s='\"])" + re.escape(wd.rstrip("/")) + r"(/|\s|$)", rest):
                raise ReplayError(
                    f"{ins}: names {wd} by its absolute path; use a path relative to WORKDIR"
                )
        cwd = self.host_path(root, workdir)
        run_env = dict(os.environ)
        run_env.update(env)
        if rest.startswith("["):
            argv = json.loads(rest)
        else:
            argv = ["/bin/sh", "-c", rest]
        print(f"-- {ins.line_no}: RUN {rest}", flush=True)
        started = time.monotonic()
        result = subprocess.run(argv, cwd=cwd, env=run_env)
        elapsed = time.monotonic() - started
        self.timings.append((ins.line_no, rest.split()[0:3], elapsed))
        print(f"-- {ins.line_no}: exit {result.returncode} after {elapsed:.0f} s", flush=True)
        if result.returncode != 0:
            raise ReplayError(f"{ins}: RUN failed with exit status {result.returncode}")

    def outputs(self, stage):
        """What later stages copy out of `stage`."""
        out = []
        for later in self.stages[stage.index + 1 :]:
            for ins in later.instructions:
                if ins.keyword != "COPY":
                    continue
                flags, rest = split_flags(ins.args)
                if find_stage(self.stages, flags.get("from", "")) is not stage:
                    continue
                words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
                out.extend(words[:-1])
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dockerfile", default=str(ROOT / "Dockerfile"))
    parser.add_argument("--context", default=str(ROOT))
    parser.add_argument("--stage", default="builder")
    args = parser.parse_args()

    scratch = Path(os.environ.get("REPLAY_DIR", CACHE / "replay"))
    target_dir = Path(os.environ.get("REPLAY_TARGET_DIR", CACHE / "replay-target"))
    started = time.monotonic()
    try:
        replay = Replay(Path(args.dockerfile), Path(args.context).resolve(), scratch, target_dir)
        stage = find_stage(replay.stages, args.stage)
        if stage is None:
            raise ReplayError(f"no stage {args.stage} in {args.dockerfile}")
        root, _, _ = replay.replay(stage)
        outputs = replay.outputs(stage)
        if not outputs:
            raise ReplayError(f"no later stage copies anything out of {args.stage}")
        for out in outputs:
            path = replay.host_path(root, out)
            if not (path.exists() or path.is_symlink()):
                raise ReplayError(f"{out} did not come out of stage {args.stage}")
            if path.is_file() and os.access(path, os.X_OK):
                version = subprocess.run([str(path), "--version"], capture_output=True, text=True)
                if version.returncode != 0:
                    raise ReplayError(f"{out} --version failed: {version.stderr.strip()}")
                print(f"== {out}: {version.stdout.strip()}")
            else:
                print(f"== {out}: present")
    except ReplayError as e:
        print(f"replay-builder: {e}", file=sys.stderr)
        return 1
    for line_no, words, elapsed in replay.timings:
        print(f"   RUN at line {line_no} ({' '.join(words)} ...): {elapsed:.0f} s")
    print(f"replay-builder: stage {args.stage} replayed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
