"""Text as it is read off the screen and typed into a search box, made comparable.

- `split_run_together`: OCR may run the words of a caption together ("FERRYCROSSINGS",
  "Reporter:Sian", "SianPryce"). A token is split after punctuation, at a lower-to-upper case change,
  and, when it is long and not itself a word, where an English unigram model (wordninja's Wikipedia
  word list, installed with the package, no download) finds only known words of three letters or
  more. Names it does not know ("Dunmore", "Natarajan") stay whole.
- `keyword_variants`: the words of a query with the other spellings of the same thing: numbers as
  digits and as words ("14" / "fourteen"), "%" / "percent" / "per cent", and each pair of
  neighbouring words run together ("ferry crossings" also matches an unsplit "ferrycrossings").
"""

from __future__ import annotations

import itertools
import re
from functools import cache

MIN_SPLIT_LEN = 8  # shorter unknown tokens are more often names than run-together words
MIN_PIECE_LEN = 3
MIN_SPLIT_LEN_CAPITALISED = 12  # "Natarajan", "Worthington": names; "Swimminglessonsforall": not

_ONES = [
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
][0].split()
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
WORD_NUMBERS: dict[str, int] = {w: i for i, w in enumerate(_ONES)} | {
    w: 10 * i for i, w in enumerate(_TENS) if w != "_"
}
WORD_NUMBERS |= {"hundred": 100, "thousand": 1000}
PERCENT = ("percent", "per", "cent", "%")


@cache
def _wordcost() -> dict[str, float]:
    import wordninja

    costs: dict[str, float] = wordninja.DEFAULT_LANGUAGE_MODEL._wordcost
    return costs


SHORT_WORDS = frozenset(
    ["a", "an", "as", "at", "by", "i", "in", "is", "it", "of", "on", "or", "to", "up", "we"]
)
# The words a short run beside a number may lose its space to ("Ovenat 250", "bakefor 20").
FUNCTION_WORDS = SHORT_WORDS | {"and", "for", "from", "into", "off", "out", "per", "the", "via", "with"}


def _split_run(run: str, *, by_number: bool = False) -> list[str]:
    """One run of letters, split where it is long, all one case (or capitalised and longer than a name
    usually is), not a word itself, and made only of known words (short ones only from SHORT_WORDS).
    Other mixed-case runs are names or already split. Beside a number (`by_number`: OCR drops the
    spaces around figures, "Ovenat 250 degrees") a shorter run splits too, into exactly one known word
    of MIN_PIECE_LEN letters or more and one of FUNCTION_WORDS ("Oven at", "bake for")."""
    one_case = run.islower() or run.isupper()
    if by_number and MIN_PIECE_LEN < len(run) < MIN_SPLIT_LEN:
        return _split_short(run)
    capitalised = len(run) >= MIN_SPLIT_LEN_CAPITALISED and run[0].isupper() and run[1:].islower()
    if len(run) < MIN_SPLIT_LEN or not (one_case or capitalised) or run.lower() in _wordcost():
        return [run]
    import wordninja

    pieces: list[str] = wordninja.split(run)
    if len(pieces) < 2 or "".join(pieces) != run:
        return [run]
    if any(len(p) < MIN_PIECE_LEN and p.lower() not in SHORT_WORDS for p in pieces):
        return [run]
    return pieces


def _split_short(run: str) -> list[str]:
    if not (run.islower() or run.isupper() or (run[0].isupper() and run[1:].islower())):
        return [run]
    costs = _wordcost()
    if run.lower() in costs:
        return [run]
    import wordninja

    pieces: list[str] = wordninja.split(run)
    if len(pieces) != 2 or "".join(pieces) != run:
        return [run]
    short = [p.lower() in FUNCTION_WORDS for p in pieces]
    long = [len(p) >= MIN_PIECE_LEN and p.lower() in costs for p in pieces]
    if sorted(short) != [False, True] or not any(a and not b for a, b in zip(long, short, strict=True)):
        return [run]
    return pieces


def split_run_together(text: str) -> str:
    """The text with run-together words split; spacing otherwise as it was."""
    text = re.sub(r"(?<=[A-Za-z])([:;,!?])(?=[A-Za-z])", r"\1 ", text)
    text = re.sub(r"(?<=[a-z]{2})(?=[A-Z])", " ", text)  # camel case: "SianPryce"
    text = re.sub(r"(?<=[A-Za-z]{2})(?=\d)|(?<=\d)(?=[A-Za-z]{3})", " ", text)  # "BUILT1850"
    tokens = text.split()
    out = []
    for i, token in enumerate(tokens):
        by_number = any(
            0 <= j < len(tokens) and re.fullmatch(r"\d[\d.,]*%?", tokens[j]) for j in (i - 1, i + 1)
        )
        parts = re.split(r"([A-Za-z]+)", token)  # letters, and what lies between them
        out.append("".join(" ".join(_split_run(p, by_number=by_number)) if p.isalpha() else p for p in parts))
    return " ".join(out)


def number_words(n: int) -> list[str]:
    """English words for 0..9999 as speech has them ("1850": eighteen fifty, "214": two hundred
    fourteen); [] beyond."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10], *([_ONES[n % 10]] if n % 10 else [])]
    if n < 1000:
        return [_ONES[n // 100], "hundred", *(number_words(n % 100) if n % 100 else [])]
    if n < 10000:
        if n % 1000 == 0:
            return [_ONES[n // 1000], "thousand"]
        if 1100 <= n < 2000 or n >= 2010:  # read as a year: eighteen fifty, twenty twenty-four
            high, low = divmod(n, 100)
            return [*number_words(high), *(number_words(low) if low else ["hundred"])]
        return [_ONES[n // 1000], "thousand", *number_words(n % 1000)]
    return []


def words_to_number(words: list[str]) -> int | None:
    """The number a run of number words says ("fourteen", "twenty five", "two hundred fourteen",
    "eighteen fifty" read as a year), or None."""
    if not words or any(w not in WORD_NUMBERS for w in words):
        return None
    total, chunk, chunks = 0, None, []
    for w in words:
        v = WORD_NUMBERS[w]
        if v == 1000:
            total += (chunk or 1) * 1000
            chunk = None
        elif v == 100:
            chunk = (chunk or 1) * 100
        elif (chunk is not None and chunk % 100 == 0 and chunk >= 100) or (
            chunk is not None and chunk % 10 == 0 and 20 <= chunk < 100 and v < 10
        ):
            chunk += v
        elif chunk is not None and chunk < 100 and not total:
            chunks.append(chunk)  # a second group without a multiplier: a year ("eighteen fifty")
            chunk = v
        else:
            chunk = (chunk or 0) + v
    if chunks:
        return chunks[0] * 100 + (chunk or 0) if len(chunks) == 1 else None
    return total + (chunk or 0)


def keyword_variants(query: str) -> list[str]:
    """The query's lower-case words, then their other spellings (order kept, no repeats)."""
    words = re.findall(r"\d+(?:[.,]\d+)?%?|[^\W\d_]+%?|%", query.lower())
    out: list[str] = []
    for w in words:
        if w.endswith("%"):
            out.extend([w.rstrip("%"), "percent"] if w != "%" else ["percent"])
        else:
            out.append(w)
    extra: list[str] = []
    for w in out:
        if w.isdecimal():  # not isdigit(): "²" is a digit that int() refuses
            extra.extend(number_words(int(w)))
        elif w in ("percent", "cent"):
            extra.append("percent")
    # Runs of number words as digits.
    i = 0
    while i < len(out):
        j = i
        while j < len(out) and out[j] in WORD_NUMBERS:
            j += 1
        if j > i:
            n = words_to_number(out[i:j])
            if n is not None:
                extra.append(str(n))
            i = j
        else:
            i += 1
    letters = [w for w in out if w.isalpha()]
    extra.extend(a + b for a, b in itertools.pairwise(letters))
    return list(dict.fromkeys(out + extra))
