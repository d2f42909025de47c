#!/usr/bin/env python3
"""Writes a help2man include file with a COMMANDS section: the --help text
of every command `cryomamba --help` lists, verbatim (the texts stay the one
source of the man page). Usage: cli_commands.py CRYOMAMBA OUTPUT"""
import re
import subprocess
import sys


def help_of(cli, *args):
    out = subprocess.run([cli, *args, "--help"], check=True, capture_output=True,
                         text=True, timeout=30)
    return out.stdout


def roff(text):
    # Verbatim lines: escape backslashes, and a leading . or ' that roff
    # would read as a request.
    lines = []
    for line in text.rstrip("\n").split("\n"):
        line = line.replace("\\", "\\e")
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def main():
    cli, output = sys.argv[1], sys.argv[2]
    commands = []
    in_commands = False
    for line in help_of(cli).split("\n"):
        if line.strip() == "Commands:":
            in_commands = True
        elif in_commands and line and not line.startswith(" "):
            break
        elif in_commands:
            m = re.match(r"^  ([a-z][a-z-]*)\b", line)
            if m:
                commands.append(m.group(1))
    if not commands:
        sys.exit("cli_commands.py: no commands in `cryomamba --help`")
    parts = ["[COMMANDS]",
             "Each command's own help (\\fBcryomamba\\fR \\fICOMMAND\\fR "
             "\\fB\\-\\-help\\fR):"]
    for name in commands:
        parts += [".SS %s" % name, ".nf", roff(help_of(cli, name)), ".fi"]
    with open(output, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
