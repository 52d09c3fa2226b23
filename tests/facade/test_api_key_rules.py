"""API keys at their edges (issue 14: found by a mutant that no other test noticed)."""

from __future__ import annotations

import pytest
from channel_api.facade.api_keys import ApiKeysError, parse_api_keys


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_a_file_without_keys_says_so_exactly(text: str) -> None:
    with pytest.raises(ApiKeysError) as refused:
        parse_api_keys(text)
    assert str(refused.value) == "no API keys: the facade would refuse every request"
