"""A small BPE tokenizer for crystal text, trained on the training rows and the prompt templates.

Why not the Qwen2.5 tokenizer for the tiny model: Qwen splits every digit into its own token, so a site
line ``Ca 0.000 0.000 0.335 4e`` costs ~22 tokens and a 150k-row embedding matrix would be 90 % of a 4M
parameter model. Here numbers are pre-split into an integer part with its dot (``" 0."``, ``" 16."``) and a
fraction (``"335"``); each piece is one token when it is frequent, so the same line is ~9 tokens, and the
model sees every coordinate value as one symbol instead of learning to count digits. Elements, Wyckoff
letters, space-group symbols and the prompt's English words become single tokens too. Byte-level BPE keeps
every string encodable (an unseen value falls back to smaller pieces), and the result is a plain Hugging
Face ``PreTrainedTokenizerFast`` saved next to the model.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

EOS = "<|endoftext|>"
PAD = "<|pad|>"
# One pre-token per: capitalised word (element symbols stay whole: "CaO" -> "Ca", "O"), lowercase word,
# integer part with its dot, digit run, newline, other punctuation. An optional leading space is kept on
# the piece (GPT-2 style) so spaces cost no tokens of their own. A Wyckoff label (" 4c") is one piece; it
# only occurs after a space, which keeps formula parts like "Sb4O" apart. The space-group symbol after
# "Spacegroup:" is one piece, so the model picks one of the symbols it has seen instead of composing
# letters and digits into a group that does not exist (the commonest decode failure otherwise).
PRETOKEN_PATTERN = r"(?<=Spacegroup:) \S+| \d+[a-zA-Z](?![A-Za-z\d])| ?[A-Z][a-z]*| ?[a-z]+| ?\d+\.| ?\d+|\n| ?[^\sA-Za-z\d]+|\s+"


def pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def train_crystal_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """Train the BPE on ``texts`` (crystals and prompts); returns a ``PreTrainedTokenizerFast``."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS, pad_token=PAD, bos_token=None, padding_side="left",
        clean_up_tokenization_spaces=False,
    )
