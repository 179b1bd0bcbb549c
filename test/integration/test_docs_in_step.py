"""The English pages and their Chinese twins show the same commands: every line of an
indented code block in one is in the other, so a step added to one language cannot go
missing from the other (README.md / README.zh-CN.md, docs/X.md / docs/zh-CN/X.md). Also:
every `mqnode ...` flag and subcommand the pages use is one the binary knows (`--help`)."""

import os
import re
import subprocess

import pytest

from docs_text import code_lines

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BIN = os.environ.get("MQNODE_BIN", "")
PAIRS = [("README.md", "README.zh-CN.md")] + [
    ("docs/%s.md" % page, "docs/zh-CN/%s.md" % page) for page in ("deploy", "getting-started", "operations")]


@pytest.mark.parametrize("en_page,zh_page", PAIRS)
def test_english_and_chinese_pages_show_the_same_commands(en_page, zh_page):
    en = code_lines(os.path.join(ROOT, en_page))
    zh = code_lines(os.path.join(ROOT, zh_page))
    assert len(en) >= 3
    assert [c for c in en if c not in zh] == [], "in %s, missing from %s" % (en_page, zh_page)
    assert [c for c in zh if c not in en] == [], "in %s, missing from %s" % (zh_page, en_page)


@pytest.mark.parametrize("page", [en for en, _ in PAIRS])
def test_mqnode_options_and_verbs_in_the_page_exist(page):
    text = open(os.path.join(ROOT, page)).read()
    help_text = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=20).stdout
    for opt in sorted(set(re.findall(r"mqnode (--[a-z-]+)", text))):
        assert opt in help_text, opt
    for sub in sorted(set(re.findall(r"mqnode ([a-z_]+)", text)) - {"ctl"}):
        if sub in ("import", "version", "hash_password"):
            assert sub in help_text, sub
    ctl_help = subprocess.run([BIN, "ctl", "--help"], capture_output=True, text=True, timeout=20).stdout
    for verb in sorted(set(re.findall(r"mqnode ctl (?:--data-dir \S+ )?([a-z_]+)", text))):
        assert verb in ctl_help, verb
