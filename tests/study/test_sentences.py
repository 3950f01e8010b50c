"""study/sentences.py: the template's sentences are one line each, a missing number is an error, pct as quoted."""
import jinja2
import pytest

from inverse_vae.study.sentences import pct, say


def test_a_sentence_is_one_line_whatever_the_template_wraps():
    line = say("amortization_gap", gap={"gap": 4.81, "gap_stderr": 0.5, "encoder_elbo": -110.0, "svi_elbo": -105.19, "n": 50})
    assert line == ("The amortization gap: a per-image q(z|x) raises the ELBO by 4.81 ± 0.50 nats per image over the "
                    "encoder's q (-110.00 → -105.19, on 50 images).")


def test_a_missing_number_is_refused_not_left_blank():
    with pytest.raises(jinja2.UndefinedError, match="n"):
        say("amortization_gap", gap={"gap": 4.81, "gap_stderr": 0.5, "encoder_elbo": -110.0, "svi_elbo": -105.19})


@pytest.mark.parametrize(("value", "shown"), [(None, "—"), (float("nan"), "—"), (0.0, "0.0%"), (0.0003, "0.03%"),
                                              (0.331, "33.1%"), (1.0, "100.0%")])
def test_pct_quotes_small_shares_to_two_decimals(value, shown):
    assert pct(value) == shown
