"""What the doc tests read from a Markdown page: the lines of its indented code blocks."""


def code_lines(path):
    """Lines of the page's indented code blocks, stripped, in order. A block starts with a
    line indented four spaces after a blank line (not a list item's lazy continuation) and
    runs while lines stay indented or blank."""
    out = []
    in_block = False
    prev_blank = True
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            blank = not line.strip()
            if in_block and (blank or line.startswith("    ")):
                if not blank:
                    out.append(line.strip())
            else:
                in_block = prev_blank and line.startswith("    ") and not line.startswith("     ")
                if in_block:
                    out.append(line.strip())
            prev_blank = blank
    return out
