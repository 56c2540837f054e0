"""allow-tags and ignore-tags match as Image Updater's Go does, in linear time.

The tables are Go's own: `path/filepath/match_test.go` (matchTests) and `regexp/syntax/
parse_test.go` (invalidRegexps, onlyPerl, onlyPOSIX), rows copied as data; `regexp/find_test.go`
(findTests) reduced to whether MatchString finds anything. Rows Python cannot express (invalid
UTF-8 in a pattern or text) are left out: annotations are always valid UTF-8.
"""

from __future__ import annotations

import pytest

from cmp.imageupdater.annotations import compile_allow_tags
from cmp.imageupdater.gomatch import BadPattern, compile_glob, compile_regexp

# filepath.Match(pattern, s) -> (match, ErrBadPattern?)
GO_MATCH_TESTS = [
    ("abc", "abc", True, False),
    ("*", "abc", True, False),
    ("*c", "abc", True, False),
    ("a*", "a", True, False),
    ("a*", "abc", True, False),
    ("a*", "ab/c", False, False),
    ("a*/b", "abc/b", True, False),
    ("a*/b", "a/c/b", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True, False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False, False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True, False),
    ("a*b?c*x", "abxbbxdbxebxczzy", False, False),
    ("ab[c]", "abc", True, False),
    ("ab[b-d]", "abc", True, False),
    ("ab[e-g]", "abc", False, False),
    ("ab[^c]", "abc", False, False),
    ("ab[^b-d]", "abc", False, False),
    ("ab[^e-g]", "abc", True, False),
    ("a\\*b", "a*b", True, False),
    ("a\\*b", "ab", False, False),
    ("a?b", "a☺b", True, False),
    ("a[^a]b", "a☺b", True, False),
    ("a???b", "a☺b", False, False),
    ("a[^a][^a][^a]b", "a☺b", False, False),
    ("[a-ζ]*", "α", True, False),
    ("*[a-ζ]", "A", False, False),
    ("a?b", "a/b", False, False),
    ("a*b", "a/b", False, False),
    ("[\\]a]", "]", True, False),
    ("[\\-]", "-", True, False),
    ("[x\\-]", "x", True, False),
    ("[x\\-]", "-", True, False),
    ("[x\\-]", "z", False, False),
    ("[\\-x]", "x", True, False),
    ("[\\-x]", "-", True, False),
    ("[\\-x]", "a", False, False),
    ("[]a]", "]", False, True),
    ("[-]", "-", False, True),
    ("[x-]", "x", False, True),
    ("[x-]", "-", False, True),
    ("[x-]", "z", False, True),
    ("[-x]", "x", False, True),
    ("[-x]", "-", False, True),
    ("[-x]", "a", False, True),
    ("\\", "a", False, True),
    ("[a-b-c]", "a", False, True),
    ("[", "a", False, True),
    ("[^", "a", False, True),
    ("[^bc", "a", False, True),
    ("a[", "a", False, True),
    ("a[", "ab", False, True),
    ("a[", "x", False, True),
    ("a/b[", "x", False, True),
    ("*x", "xxx", True, False),
]


@pytest.mark.parametrize(("pattern", "text", "match", "bad"), GO_MATCH_TESTS)
def test_glob_matches_go_filepath_match_table(
    pattern: str, text: str, match: bool, bad: bool
) -> None:
    try:
        matcher = compile_glob(pattern)
    except BadPattern:
        assert bad, f"Go accepts {pattern!r}"
        return
    assert not bad, f"Go rejects {pattern!r}"
    assert matcher(text) is match


# regexp/syntax: rejected in Perl mode (what regexp.Compile uses).
GO_INVALID_REGEXPS = [
    "(",
    ")",
    "(a",
    "a)",
    "(a))",
    "(a|b|",
    "a|b|)",
    "(a|b|))",
    "(a|b",
    "a|b)",
    "(a|b))",
    "[a-z",
    "([a-z)",
    "[a-z)",
    "([a-z]))",
    "x{1001}",
    "x{9876543210}",
    "x{2,1}",
    "x{1,9876543210}",
    "(?P<name>a",
    "(?P<name>",
    "(?P<name",
    "(?P<x y>a)",
    "(?P<>a)",
    "(?<name>a",
    "(?<name>",
    "(?<name",
    "(?<x y>a)",
    "(?<>a)",
    "[a-Z]",
    "(?i)[a-Z]",
    "\\Q\\E*",
    "a{100000}",
    "a{100000,}",
    "((((((((((x{2}){2}){2}){2}){2}){2}){2}){2}){2}){2})",
    "(?:[a-z]{4}){0,251}",
    "(" * 1000 + ")" * 1000,
    "(?:" * 1000 + ")*" * 1000,
    "(" + "(xx?)" * 1000 + "){1000}",
    "(xx?){1000}" * 1000,
    "\\pL" * 27000,
    # onlyPOSIX: valid only without Perl flags
    "a++",
    "a**",
    "a?*",
    "a+*",
    "a{1}*",
    ".{1}{2}.{3}",
    # and what Python's `re` or RE2's C++ parser would take but Go does not
    "(?=a)",
    "(?!a)",
    "(?<=a)b",
    "(?>a)",
    "(a)\\1",
    "(?P<n>a)(?P=n)",
    "\\Z",
    "\\C",
    "a{99999999999}",
    "\ud800",  # Go's invalid-UTF-8 rows, as Python can hold them: a lone surrogate (JSON \ud800)
]
GO_PERL_ONLY = [
    "[a-b-c]",
    "\\Qabc\\E",
    "\\Q*+?{[\\E",
    "\\Q\\\\E",
    "\\Q\\\\\\E",
    "(?:a)",
    "(?P<name>a)",
    "(?<name>a)",
    "[[:alpha:]]",
    "\\pN",
    "(?U)a+",
    "x{2}{,3}",
]


@pytest.mark.parametrize("expression", GO_INVALID_REGEXPS, ids=lambda e: repr(e[:30]))
def test_regexp_rejects_what_go_rejects(expression: str) -> None:
    with pytest.raises(BadPattern):
        compile_regexp(expression)


@pytest.mark.parametrize("expression", GO_PERL_ONLY)
def test_regexp_accepts_go_perl_syntax(expression: str) -> None:
    compile_regexp(expression)


# regexp/find_test.go: does MatchString(text) find a match?
GO_FIND_TESTS = [
    ("", "", True),
    ("^abcdefg", "abcdefg", True),
    ("a+", "baaab", True),
    ("x", "y", False),
    ("abcd..", "abcdef", True),
    (".*", "abcdef", True),
    ("^abcd$", "abcd", True),
    ("^bcd'", "abcdef", False),
    ("^abcd$", "abcde", False),
    ("[^a-z]+", "ab1234cd", True),
    ("[a\\-\\]z]+", "az]-bcz", True),
    ("[^\\n]+", "abcd\n", True),
    ("[日本語]+", "日本語日本語", True),
    ("(.)(.)", "日a", True),
    ("/$", "/abc/", True),
    ("/$", "/abc", False),
    ("axxb$", "axxcb", False),
    ("da(.)a$", "daXY data", True),
    ("(?:.|(?:.a))", "", False),
    ("(?-s)(?:(?:^).)", "\n", False),
    ("(?s)(?:(?:^).)", "\n", True),
    ("(?:(?:^).)", "\n", False),
    ("\\B", "x", False),
    ("\\B", "xx", True),
    ("\\B", "x y", False),
    ("[^\\S\\s]", "abcd", False),
    ("[^\\S[:space:]]", "abcd", False),
    ("[^\\D\\d]", "abcd", False),
    ("(?i)\\W", "k", False),
    ("(?i)\\W", "s", False),
    ("\\`", "`", True),
    (
        "\\!\\\"\\#\\$\\%\\&\\'\\(\\)\\*\\+\\,\\-\\.\\/\\:\\;\\<\\=\\>\\?\\@\\[\\\\\\]\\^\\_\\{\\|\\}\\~",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_{|}~",
        True,
    ),
    # Go semantics Python's `re` gets wrong: `$` is the end of text, \z exists, \w is ASCII.
    ("^main$", "main\n", False),
    ("^main\\z", "main", True),
    ("^\\w+$", "é", False),
    ("^(?i)K$", "\u212a", True),
    ("x{2}{,3}", "xx{,3}", True),
]


@pytest.mark.parametrize(("expression", "text", "found"), GO_FIND_TESTS)
def test_regexp_matches_like_go(expression: str, text: str, found: bool) -> None:
    assert compile_regexp(expression)(text) is found


def test_exponential_regexp_allow_tags_is_linear_time() -> None:
    """The attack: `^(a+)+$` against `aaaa…ab` never finished with a backtracking engine."""
    matches, problem = compile_allow_tags("regexp:^(a+)+$")
    assert problem is None
    assert matches("a" * 40 + "b") is False
    assert matches("a" * 100_000 + "b") is False
    assert matches("a" * 128) is True  # (a backtracking engine never returns from the above)


def test_ignore_tags_glob_with_many_stars_is_linear_time() -> None:
    """The attack: a 10-star ignore-tags glob against a 61-character tag took more than 20 s."""
    matches = compile_glob("*a" * 10 + "*b")
    assert matches("a" * 61) is False
    assert matches("a" * 100_000) is False
    assert matches("a" * 61 + "b") is True


@pytest.mark.parametrize("value", ["regexp:a{99999999999}", "regexp:" + "(" * 1000 + ")" * 1000])
def test_allow_tags_go_rejects_match_nothing_and_say_why(value: str) -> None:
    matches, problem = compile_allow_tags(value)
    assert problem is not None and "not a valid regular expression" in problem
    assert matches("a") is False


# Image Updater's own Test_ContainerImage_ParseMatch (registry-scanner/pkg/image/options_test.go).
IMAGE_UPDATER_PARSE_MATCH = [
    ("any", "MatchFuncAny any tag name", True),
    ("ANY", "MatchFuncAny any tag name", True),
    ("other", "MatchFuncNone any tag name", False),
    ("not-regexp:a-z", "MatchFuncNone any tag name", False),
    ("regexp:[aA-zZ]", "MatchFuncRegexp-tag-name", True),
    ("RegExp:[aA-zZ]", "MatchFuncRegexp-tag-name", True),
    ("regexp:[aA-zZ", "MatchFuncNone-tag-name", False),  # invalid: missing ]
]


@pytest.mark.parametrize(("value", "tag", "allowed"), IMAGE_UPDATER_PARSE_MATCH)
def test_allow_tags_match_image_updaters_parse_match_table(
    value: str, tag: str, allowed: bool
) -> None:
    matches, _ = compile_allow_tags(value)
    assert matches(tag) is allowed


def test_re2_is_loaded_only_once_a_pattern_is_compiled() -> None:
    """The warm render path's import budget: an app without allow-tags or ignore-tags never
    pays for RE2 (bench `imports` checks the whole render)."""
    import subprocess
    import sys

    program = (
        "import sys\n"
        "from cmp.imageupdater.annotations import merge_sources, parse_policies\n"
        "p = 'argocd-image-updater.argoproj.io/'\n"
        "(policy,) = parse_policies(merge_sources({p + 'image-list': 'web=x/web',\n"
        "    p + 'allow-tags': 'any', p + 'update-strategy': 'alphabetical'}, {}))\n"
        "assert policy.allows('main')\n"
        "print('re2' in sys.modules)\n"
        "(policy,) = parse_policies(merge_sources({p + 'image-list': 'web=x/web',\n"
        "    p + 'allow-tags': 'regexp:^m', p + 'update-strategy': 'alphabetical'}, {}))\n"
        "assert policy.allows('main')\n"
        "print('re2' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "True"]
