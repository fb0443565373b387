"""Building real documents for the corpus-format tests: PDFs written with fpdf2, Markdown, plain text.

The PDFs are real ones (fpdf2's writer: compressed content streams, justified lines with word
spacing, a page-number footer, document metadata), so the extractor parses what a PDF writer
produces rather than a string the test wrote to look like one. Plain code, no fixtures; the e2e
test builds its corpus with these too.
"""

from __future__ import annotations

from collections.abc import Sequence

from fpdf import FPDF


def make_pdf(
    title: str, pages: Sequence[Sequence[str]], *, heading: str | None = None, user_password: str = ""
) -> bytes:
    """A PDF with `title` in its metadata, one page per item of `pages` (each a list of paragraphs,
    written as justified, wrapped text), a bold heading on the first page and a page number at the foot."""
    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_auto_page_break(auto=True, margin=20)
    if user_password:
        pdf.set_encryption(owner_password="owner-" + user_password, user_password=user_password)
    for number, paragraphs in enumerate(pages, start=1):
        pdf.add_page()
        if number == 1 and heading:
            pdf.set_font("Helvetica", "B", 16)
            pdf.multi_cell(0, 10, heading)
            pdf.ln(4)
        pdf.set_font("Helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, align="J")
            pdf.ln(4)
        pdf.set_y(-15)
        pdf.set_font("Helvetica", size=9)
        pdf.cell(0, 10, str(number), align="C")
    return bytes(pdf.output())


LIGHTHOUSE_PAGES: tuple[tuple[str, ...], ...] = (
    (
        "A lighthouse is a tower that carries a bright lamp to guide ships along a dangerous coast at night. "
        "The Eddystone Lighthouse guides ships past a dangerous reef in the English Channel, south of the "
        "harbour of Plymouth.",
        "The Fresnel lens bends the light of a single lamp into a narrow horizontal beam that sailors can see "
        "from far out at sea. The Hook Lighthouse in Ireland is one of the oldest working lighthouses in the world.",
    ),
    (
        "Each lighthouse flashes its own pattern of light, which sailors call the character of the light. "
        "The Northern Lighthouse Board maintains the lighthouses around the coast of Scotland and the Isle of Man.",
        "Lighthouse keepers once lived beside the tower and trimmed the wick of the lamp every few hours. "
        "The Trinity House corporation looks after the lighthouses of England, Wales and the Channel Islands.",
    ),
)
"""Two pages of neutral prose; every sentence is long enough to stand as an answer."""

TIDES_MARKDOWN = """---
title: Tidal energy notes
tags: [energy]
---

# Tidal energy

Tidal energy is a form of hydropower that turns the rise and fall of the sea into
electricity. The tides are driven by the gravitational pull of the Moon and the Sun,
so they can be predicted many years in advance.

## Barrages

A tidal barrage is a low dam built across the mouth of an estuary. The La Rance barrage
is a tidal power station on the estuary of the Rance river in Brittany.

- The Sihwa Lake station in South Korea is the largest tidal power station in the world.
- A barrage changes how **sediment** settles in the [estuary](https://example.org/estuary).

<div class="note">Raw HTML is layout, not prose.</div>

```text
turbine output = flow x head
```
"""

BEES_TEXT = (
    "Honeybees\n"
    "\n"
    "A honeybee colony is a family of insects that lives together in a single nest\n"
    "called a hive. The queen lays the eggs of the colony, while thousands of worker\n"
    "bees gather nectar and pollen from flowers.\n"
    "\n"
    "Worker bees tell one another where to find flowers by performing a waggle dance\n"
    "on the comb. The Varroa mite is a parasite that feeds on honey bees and spreads\n"
    "viruses among them.\n"
)
