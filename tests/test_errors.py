"""graphprune/errors.py: what the CLI reports: bad input exits 2, other deliberate errors
1; messages are cut to their first line."""

from graphprune.errors import BadInput, GraphpruneError, VerificationError, first_line


def test_exit_codes_and_first_lines():
    assert BadInput.exit_code == 2 and VerificationError.exit_code == 1
    assert issubclass(BadInput, GraphpruneError) and issubclass(VerificationError, GraphpruneError)
    assert first_line(ValueError("one\ntwo")) == "one"
    assert first_line(ValueError("")) == "ValueError"
    assert len(first_line(ValueError("x" * 1000))) == 300
