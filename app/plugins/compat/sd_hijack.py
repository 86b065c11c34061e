"""``modules.sd_hijack``: the parts of A1111's ``model_hijack`` extensions read - the textual-inversion
database (``model_hijack.embedding_db``: ``word_embeddings``, ``skipped_embeddings``,
``load_textual_inversion_embeddings``) and prompt token counts - over Atelier's embeddings and tokenizer.

A1111's hijack replaces the CLIP text encoder and the attention forward functions of an ldm model; Atelier
runs diffusers models and has no such objects, so ``hijack()``/``undo_hijack()`` and the optimisation list
raise ``UnsupportedFeature`` with the reason (the loader reports it as "unsupported: ..." for the extension).
"""

from __future__ import annotations

from typing import Any

from app.plugins.compat.current import current


class UnsupportedFeature(NotImplementedError):
    """An A1111 internal that Atelier's engine does not have (the message starts with "unsupported:")."""


class UnsupportedAttribute(UnsupportedFeature, AttributeError):
    """An A1111 attribute Atelier cannot offer; an ``AttributeError`` too, so ``hasattr`` probes stay False."""


_HIJACK_REASON = ("unsupported: A1111's model hijack patches the CLIP text encoder and attention forward of its ldm "
                  "model; Atelier runs diffusers models, which have no such hook (use on_cfg_denoiser or a Script)")


class _EmbeddingDb:
    """``model_hijack.embedding_db`` over the model manager's ``EmbeddingDatabase`` (or one over the
    embeddings folders while no manager exists yet)."""

    def __init__(self) -> None:
        self._own: dict[tuple[str, ...], Any] = {}

    def _db(self) -> Any:
        runtime = current().runtime
        manager = getattr(runtime, "_lazy", {}).get("manager") if runtime is not None else None
        db = getattr(manager, "embeddings", None)
        if db is not None:
            return db
        dirs = tuple(str(d) for d in getattr(getattr(runtime, "paths", None), "embeddings_dirs", ()))
        if dirs not in self._own:  # one per set of folders (each runtime's own)
            from app.models.embeddings import EmbeddingDatabase

            self._own[dirs] = EmbeddingDatabase(dirs)
            self._own[dirs].load()
        return self._own[dirs]

    @property
    def word_embeddings(self) -> dict[str, Any]:
        return self._db().embeddings

    @property
    def skipped_embeddings(self) -> dict[str, Any]:
        return self._db().skipped_embeddings

    @property
    def embedding_dirs(self) -> dict[str, Any]:
        return {str(d): d for d in self._db().dirs}

    def load_textual_inversion_embeddings(self, force_reload: bool = False, sync_with_sd_model: bool = True) -> None:
        """Re-read the embeddings folders (only changed files unless ``force_reload``)."""
        self._db().load(force=force_reload)


class ModelHijack:
    """``sd_hijack.model_hijack``."""

    def __init__(self) -> None:
        self.embedding_db = _EmbeddingDb()
        self.comments: list[str] = []
        self.extra_generation_params: dict[str, Any] = {}
        self.fixes = None
        self.layers = None
        self.circular_enabled = False
        self.clip = None
        self.optimization_method: str | None = None

    def hijack(self, m: Any) -> None:
        raise UnsupportedFeature(_HIJACK_REASON)

    def undo_hijack(self, m: Any) -> None:
        raise UnsupportedFeature(_HIJACK_REASON)

    def apply_optimizations(self, option: Any = None) -> None:
        raise UnsupportedFeature(_HIJACK_REASON)

    def clear_comments(self) -> None:
        self.comments = []
        self.extra_generation_params = {}

    def get_prompt_lengths(self, text: str) -> tuple[int, int]:
        """(tokens used, tokens allowed in the chunks used) for ``text``, as the token counter shows."""
        from app.prompts.chunks import token_count

        return token_count(text)


model_hijack = ModelHijack()
