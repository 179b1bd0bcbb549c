"""docs/deploy.md and its Chinese twin docs/zh-CN/deploy.md show the same commands: every
command line of an indented code block in one is in the other, so a step added to one
language cannot go missing from the other. Also: every `mqnode ...` flag and subcommand
those pages use is one the binary knows (`--help`)."""

import os
import re
import subprocess

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")
BIN = os.environ.get("MQNODE_BIN", "")


def commands(path):
    """Lines of 4-space indented blocks (not table rows or prose)."""
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith("    ") and not line.startswith("     ") and line.strip():
                out.append(line.strip())
    return out


def test_english_and_chinese_deploy_pages_show_the_same_commands():
    en = commands(os.path.join(DOCS, "deploy.md"))
    zh = commands(os.path.join(DOCS, "zh-CN", "deploy.md"))
    assert len(en) > 10
    assert [c for c in en if c not in zh] == [], "in deploy.md, missing from zh-CN/deploy.md"
    assert [c for c in zh if c not in en] == [], "in zh-CN/deploy.md, missing from deploy.md"


def test_mqnode_options_in_the_deploy_page_exist():
    text = open(os.path.join(DOCS, "deploy.md")).read()
    help_text = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=20).stdout
    for opt in sorted(set(re.findall(r"mqnode (--[a-z-]+)", text))):
        assert opt in help_text, opt
    ctl_help = subprocess.run([BIN, "ctl", "--help"], capture_output=True, text=True, timeout=20).stdout
    for verb in sorted(set(re.findall(r"mqnode ctl ([a-z_]+)", text))):
        assert verb in ctl_help, verb
