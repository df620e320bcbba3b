"""The reference family's character-level tokenizer: one token per letter, separator or skill tag.

EOS is the newline that ends every answer, so `generate` stops exactly where an answer ends.
"""
from __future__ import annotations

import re

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from skill_catalog.render import layout
from skill_catalog.skill import skills

SPECIAL_TOKENS = ("<pad>", "<unk>")
SEPARATORS = " |=>:"


def vocabulary(skill_set: str = "symbolic") -> list[str]:
    """Tokens in id order: specials, the stop string, skill tags, letters, separators."""
    pool = skills(skill_set)
    letters = sorted({ch for _ in range(1) for ch in _alphabet(pool[0].input_type)})
    return [*SPECIAL_TOKENS, layout(skill_set).stop, *(s.tag for s in pool), *letters, *SEPARATORS]


def _alphabet(type_name: str) -> str:
    from skill_catalog import symbolic

    if type_name != symbolic.WORD.name:
        raise ValueError(f"the character tokenizer only knows type {symbolic.WORD.name!r}, not {type_name!r}")
    return symbolic.ALPHABET


def build_tokenizer(skill_set: str = "symbolic") -> PreTrainedTokenizerFast:
    """A fast tokenizer whose `decode(encode(s)) == s` for every text of the skill set."""
    vocab = vocabulary(skill_set)
    tags = sorted((s.tag for s in skills(skill_set)), key=len, reverse=True)
    pattern = "|".join([*(re.escape(t) for t in tags), r"[\s\S]"])
    core = Tokenizer(models.WordLevel({tok: i for i, tok in enumerate(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    core.decoder = decoders.Fuse()
    stop = layout(skill_set).stop
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=stop, pad_token="<pad>", unk_token="<unk>", clean_up_tokenization_spaces=False
    )
