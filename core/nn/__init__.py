"""Modules built on the core ops: attention, transformer layers, positional encodings, pooling."""

from core.nn.attention import MultiHeadAttention, key_padding_to_attention_mask
from core.nn.cache import KVCache
from core.nn.dropout import Dropout
from core.nn.pointer import PointerAttention
from core.nn.pooling import AttentionPool
from core.nn.positional import LearnedPositionalEncoding, SinusoidalPositionalEncoding
from core.nn.transformer import (
    FeedForward,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "AttentionPool",
    "Dropout",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEncoding",
    "MultiHeadAttention",
    "PointerAttention",
    "SinusoidalPositionalEncoding",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "key_padding_to_attention_mask",
]
