"""ID retrieval (Table III): is a stylised image's nearest content its own source?

Embeddings are unit-norm face-identity features (ArcFace IR-SE-50 for real faces, or the toy
identity embedder). The distance is the squared Euclidean distance; each stylised image is assigned
the content whose embedding is nearest (brute force), and top-1 is the fraction assigned to their
own source. The "threshold" variant also fails a match whose nearest distance exceeds ``threshold``.

Streamed runs (:func:`hrinv_nb.gallery.stylize_pairs` with ``out_dir``) are scored from disk:
:func:`embed_batches` embeds images chunk by chunk (only one chunk of images is ever in memory; the
embeddings, [M, d], are small) and :func:`id_retrieval_batches` ranks them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

Embedder = Callable[[torch.Tensor], torch.Tensor]


def id_retrieval(
    content_emb: torch.Tensor, stylized_emb: torch.Tensor, stylized_labels: torch.Tensor, threshold: float = 1.5
) -> dict[str, float]:
    """Top-1 retrieval accuracy of ``stylized_emb`` [M, d] against ``content_emb`` [N, d].

    ``stylized_labels`` [M] holds each stylised image's content index. Returns ``top1``,
    ``top1_thresh`` (matches beyond ``threshold`` count as failures), ``chance`` (1/N), ``n`` (M),
    ``num_contents`` (N) and ``mean_min_dist``.
    """
    assert content_emb.ndim == 2 and stylized_emb.ndim == 2, "embeddings must be [N, d] and [M, d]"
    assert content_emb.shape[1] == stylized_emb.shape[1], f"{tuple(content_emb.shape)} vs {tuple(stylized_emb.shape)}"
    labels = torch.as_tensor(stylized_labels).long().reshape(-1)
    assert labels.shape[0] == stylized_emb.shape[0], "one label per stylised embedding"
    n = content_emb.shape[0]
    if n == 0 or labels.numel() == 0:
        raise ValueError("id_retrieval needs at least one content and one stylised embedding")
    if labels.min() < 0 or labels.max() >= n:
        raise ValueError(f"labels must index the {n} contents")
    d = torch.cdist(stylized_emb.double(), content_emb.double()).square()
    min_d, nearest = d.min(dim=1)
    hit = nearest == labels
    return {
        "top1": hit.double().mean().item(),
        "top1_thresh": (hit & (min_d <= threshold)).double().mean().item(),
        "chance": 1.0 / n,
        "n": int(labels.numel()),
        "num_contents": int(n),
        "mean_min_dist": min_d.mean().item(),
    }


def identity_distance(embed, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance [B] between the unit-norm identity embeddings of ``a`` and ``b`` ([B,3,H,W] each).

    ``embed`` is a batched embedding function (e.g. ``toy_identity.id_embedder_fn(model)``); 0 means the
    same identity, 4 the opposite direction (the distance ID retrieval ranks by).
    """
    assert a.shape[0] == b.shape[0], f"batch sizes differ: {a.shape[0]} vs {b.shape[0]}"
    return (embed(a) - embed(b)).square().sum(dim=1)


def identity_judge(embed):
    """``judge(a, b) -> float``: the mean identity distance, the form :func:`hrinv_nb.lso` takes."""

    def judge(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(identity_distance(embed, a, b).mean())

    return judge


def embed_batches(embed: Embedder, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """``embed`` of every image of ``batches`` (each [b, 3, H, W]), one batch at a time, without gradients.

    Returns the embeddings [M, d] (float32, on the CPU) in order. Peak memory is one batch of images and
    its activations: feed it a reader such as :meth:`hrinv_nb.gallery.StreamedStylized.iter_images`.
    """
    out = []
    with torch.no_grad():
        for batch in batches:
            assert batch.ndim == 4 and batch.shape[1] == 3, f"expected [b,3,H,W] batches, got {tuple(batch.shape)}"
            emb = embed(batch)
            assert emb.shape[0] == batch.shape[0], f"{emb.shape[0]} embeddings for {batch.shape[0]} images"
            out.append(emb.detach().flatten(1).to("cpu", torch.float32))
            del batch, emb
    if not out:
        raise ValueError("embed_batches: no images")
    return torch.cat(out)


def id_retrieval_batches(
    embed: Embedder,
    content_emb: torch.Tensor,
    batches: Iterable[torch.Tensor],
    stylized_labels: torch.Tensor,
    threshold: float = 1.5,
) -> dict[str, float]:
    """:func:`id_retrieval` of stylised images read ``batches`` at a time (see :func:`embed_batches`)."""
    return id_retrieval(content_emb.to("cpu", torch.float32), embed_batches(embed, batches), stylized_labels, threshold)
