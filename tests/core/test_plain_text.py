"""core.plain_text: the one HTML renderer, for an email's HTML part and a Discourse post's
cooked HTML alike, and the text hygiene both rely on."""

from __future__ import annotations

from posventa.core.plain_text import clean_text, html_to_text

# ------------------------------------------------------------------ what email intake relies on


def test_html_drops_head_script_style_and_keeps_links() -> None:
    html = (
        "<html><head><title>Asunto</title><style>p{color:red}</style></head><body>"
        "<script>document.write('x')</script><p>Hola <b>Ana</b>,</p>"
        '<p>Vea <a href="https://kb.example/t/12">la guía</a> o escriba a '
        '<a href="mailto:ayuda@example.com">ayuda@example.com</a>.</p>'
        '<a href="javascript:alert(1)">clic</a></body></html>'
    )
    assert html_to_text(html) == (
        "Hola Ana,\n\nVea la guía (https://kb.example/t/12) o escriba a ayuda@example.com.\n\nclic"
    )


def test_html_lists_breaks_entities_and_tables() -> None:
    html = (
        "<ol><li>Uno</li><li>Dos</li></ol><ul><li>a</li></ul>Línea 1<br>Línea 2<br><br>"
        "<table><tr><td>Pedido</td><td>4411</td></tr></table>&lt;b&gt; &amp; &eacute;"
    )
    assert html_to_text(html) == "1. Uno\n2. Dos\n\n- a\n\nLínea 1\nLínea 2\n\nPedido 4411\n\n<b> & é"


def test_html_blockquotes_become_quote_lines() -> None:
    html = "<p>Respuesta</p><div>On Mon, Ana wrote:</div><blockquote>Pregunta<br>original</blockquote>"
    assert html_to_text(html) == "Respuesta\n\nOn Mon, Ana wrote:\n> Pregunta\n> original"


def test_html_missing_head_close_does_not_hide_the_body() -> None:
    assert html_to_text("<head><title>t<body><p>Visible</p>") == "Visible"


def test_html_odd_declarations_and_unterminated_markup() -> None:
    assert html_to_text("a<![if !vml]>b<![endif]>c") == "abc"
    assert html_to_text("texto <a href='x") == "texto"
    assert html_to_text("ok <!-- sin cerrar") == "ok"


def test_html_output_is_bounded() -> None:
    assert len(html_to_text("<p>palabra</p>" * 100_000, max_chars=1_000)) <= 1_000


def test_html_pre_keeps_line_structure() -> None:
    assert html_to_text("<pre>linea 1\n  linea 2</pre>") == "linea 1\n  linea 2"


# ------------------------------------------------------------------ what the KB import relies on


def test_cooked_discourse_post_paragraphs_breaks_lists_and_entities() -> None:
    html = (
        '<p>Steps&nbsp;&amp; tips:<br>open <b>Settings</b></p><script>alert("x")</script>'
        "<style>p{}</style><ul><li>one</li><li>two</li></ul><p>Done &lt;ok&gt;"
    )
    assert html_to_text(html) == "Steps & tips:\nopen Settings\n\n- one\n- two\n\nDone <ok>"


def test_frames_and_self_closed_scripts_show_nothing_and_hide_nothing() -> None:
    assert html_to_text('<iframe src="https://video.example/1">Tu navegador no muestra marcos</iframe>ok') == "ok"
    assert html_to_text("<p>antes<script/> después</p>") == "antes después"


def test_details_and_summary_are_blocks() -> None:
    assert html_to_text("<details><summary>Más</summary>El detalle</details>fin") == "Más\nEl detalle\nfin"


def test_relative_links_keep_only_their_text() -> None:
    # Discourse's @mentions and tag links are relative: no URL worth showing.
    html = '<p>Pregunta de <a class="mention" href="/u/bob">@bob</a>, ver <a href="https://kb.example/t/9">aquí</a></p>'
    assert html_to_text(html) == "Pregunta de @bob, ver aquí (https://kb.example/t/9)"


def test_white_space_is_folded_and_blank_lines_kept_single() -> None:
    assert html_to_text("  <p>  mucho   espacio\n aquí </p>\n\n\n<p>b</p>  ") == "mucho espacio aquí\n\nb"
    assert html_to_text("<div><p>a</p><p></p><p></p><p>b</p></div>") == "a\n\nb"


def test_input_and_output_are_both_bounded() -> None:
    html = "<p>visible</p>" + "<p>cut</p>" * 1000
    assert html_to_text(html, max_input_chars=len("<p>visible</p>")) == "visible"
    assert len(html_to_text(html, max_chars=20)) <= 20


def test_control_characters_and_lone_surrogates_never_come_out() -> None:
    assert html_to_text("<p>a\x00b\x1bc \ud800</p>") == "abc \ufffd"
    assert clean_text("a\r\nb\rc\x07") == "a\nb\nc"
