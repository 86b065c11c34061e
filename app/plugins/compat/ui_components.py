"""``modules.ui_components``: A1111's small gradio helpers (``FormRow``, ``ToolButton``, ``InputAccordion``...)
as thin subclasses of the installed gradio's own blocks.

Each subclass sets ``is_template`` so gradio renders it with its base class's front-end component (a subclass
name such as ``toolbutton`` has no Svelte file). ``InputAccordion`` is a checkbox that also owns an accordion:
``with InputAccordion(False, label="My ext") as enabled:`` puts the controls inside the accordion and
``enabled`` is the checkbox whose value ``ui()`` returns, as in A1111 (where a checkbox is hidden and synced
by JavaScript; here the checkbox is shown as the accordion's first control, which needs no script).

Gradio builds a component's front-end props from its ``__init__`` signature, so the subclasses whose
``__init__`` takes ``**kwargs`` declare their gradio base class's signature (``__signature__``).
Gradio's component metaclass writes a ``.pyi`` stub next to any module that subclasses a component; the one for
this module (``ui_components.pyi``) is kept in git, identical to what gradio writes, so nothing changes on disk.
"""

from __future__ import annotations

import inspect
from typing import Any

import gradio as gr


class FormComponent:
    """Marker base A1111 components share (``isinstance(x, FormComponent)``)."""

    def get_expected_parent(self) -> Any:
        return FormRow


class ToolButton(gr.Button, FormComponent):
    """A small icon button (A1111 ``ToolButton``: ``elem_classes`` "tool")."""

    is_template = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        classes = list(kwargs.pop("elem_classes", None) or [])
        super().__init__(*args, elem_classes=["tool", *classes], **kwargs)


class FormRow(gr.Row, FormComponent):
    """A row of form controls."""

    is_template = True


class FormColumn(gr.Column, FormComponent):
    """A column of form controls."""

    is_template = True


class FormGroup(gr.Group, FormComponent):
    """A group of form controls."""

    is_template = True


class ResizeHandleRow(gr.Row):
    """A1111's resizable two-column row; here an ordinary row (no drag handle)."""

    is_template = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.elem_classes = ["resize-handle-row", *(self.elem_classes or [])]


class FormHTML(gr.HTML, FormComponent):
    """HTML inside a form row."""

    is_template = True


class FormColorPicker(gr.ColorPicker, FormComponent):
    """A colour picker inside a form row."""

    is_template = True


class DropdownMulti(gr.Dropdown, FormComponent):
    """A multi-select dropdown."""

    is_template = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "multiselect": True})


class DropdownEditable(gr.Dropdown, FormComponent):
    """A dropdown that accepts typed values."""

    is_template = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "allow_custom_value": True})


class InputAccordion(gr.Checkbox):
    """A checkbox that is also an accordion (A1111 ``InputAccordion``): its value is the checkbox's; entering it
    (``with``) enters the accordion. ``open`` defaults to the value, as A1111's does."""

    is_template = True
    global_index = 0

    def __init__(self, value: bool = False, **kwargs: Any) -> None:
        elem_id = kwargs.pop("elem_id", None)
        if elem_id is None:
            elem_id = f"input-accordion-{InputAccordion.global_index}"
            InputAccordion.global_index += 1
        label = kwargs.pop("label", "Accordion")
        self.accordion_id = elem_id
        self.accordion = gr.Accordion(label=label, open=kwargs.pop("open", bool(value)), elem_id=elem_id,
                                      elem_classes=["input-accordion"])
        with self.accordion:
            super().__init__(value=bool(value), label=kwargs.pop("checkbox_label", "Enable"),
                             elem_id=f"{elem_id}-checkbox", **kwargs)

    def extra(self) -> gr.Column:
        """A1111 puts extra controls on the accordion's title bar; here a column inside the accordion."""
        with self.accordion:
            return gr.Column(min_width=0)

    def __enter__(self) -> InputAccordion:  # type: ignore[override]
        self.accordion.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, tb: Any) -> None:
        self.accordion.__exit__(exc_type, exc_value, tb)


# Gradio reads the props it sends to the page from the ``__init__`` signature: declare the base's.
for _cls, _base in ((ToolButton, gr.Button), (ResizeHandleRow, gr.Row), (DropdownMulti, gr.Dropdown),
                    (DropdownEditable, gr.Dropdown), (InputAccordion, gr.Checkbox)):
    _cls.__init__.__signature__ = inspect.signature(_base.__init__)  # type: ignore[attr-defined]
