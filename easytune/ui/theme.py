"""The look: dark, high-contrast, minimal; system fonts only (nothing fetched from a font service)."""

import gradio as gr

FONTS = ["Inter", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "system-ui", "sans-serif"]
MONO = ["JetBrains Mono", "SFMono-Regular", "Consolas", "monospace"]

THEME = gr.themes.Base(primary_hue="cyan", neutral_hue="slate", font=FONTS, font_mono=MONO).set(
    body_background_fill_dark="#0b0f17",
    block_background_fill_dark="#111827",
    body_text_color_dark="#f3f4f6",
    block_label_text_color_dark="#e5e7eb",
    border_color_primary_dark="#374151",
    button_primary_background_fill_dark="#06b6d4",
    button_primary_text_color_dark="#041014",
)

CSS = """
#et-header { align-items: center; }
#et-header h1 { margin: 0; }
.et-error { color: #fca5a5; font-weight: 600; }
#et-status h3 { margin-bottom: 0.2em; }
"""

# Always dark: the product is designed for one high-contrast palette.
FORCE_DARK_JS = "() => { document.body.classList.add('dark'); }"

CSS += """
#et-pages > .tab-wrapper { display: none; }  /* the side menu is the navigation */
#et-nav button { justify-content: flex-start; }
/* One line height for the YAML view's lines and their numbers: a line drawn in a CJK fallback font is taller
   than the gutter expects, and the numbers drift from their lines. */
.cm-editor .cm-line, .cm-editor .cm-gutterElement { line-height: 1.5 !important; }
.et-stepper-hint, #et-stepper { color: #9ca3af; font-size: .9em; }
.et-cards { display: flex; gap: 1em; flex-wrap: wrap; }
.et-card { background: #111827; border: 1px solid #374151; border-radius: 12px; padding: .8em 1.2em; min-width: 8em; }
.et-card-n { font-size: 1.8em; font-weight: 700; color: #22d3ee; }
.et-progress { height: 10px; background: #1f2937; border-radius: 999px; overflow: hidden; }
.et-progress > div { height: 100%; background: #06b6d4; transition: width .5s; }
"""

# Step ②'s plan list: each value's reason is a <summary> that expands to its longer explanation.
CSS += """
.et-plan-list { list-style: none; padding-left: 0; margin: .4em 0; }
.et-plan-list li { margin: .15em 0; }
.et-plan-list summary { cursor: pointer; }
.et-plan-list summary::marker { color: #22d3ee; }
.et-plan-list details > p { margin: .3em 0 .6em 1.2em; padding: .4em .8em; color: #cbd5e1; background: #0f172a;
  border-left: 3px solid #06b6d4; border-radius: 4px; }
"""
