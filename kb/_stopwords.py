"""Stop words for the KB matcher: English, Spanish and Portuguese, already accent-folded.

Two kinds of words go: grammar words (articles, pronouns, prepositions, auxiliaries,
conjunctions) and the boilerplate of a support request (greetings, "please", "I want to
know", "can you help", question words).  A knowledge base of a few hundred articles is
too small for IDF alone to learn that "get" or "help" says nothing about the topic: such a
word appears in only a few articles, gets a high IDF, and drags "When will I get my
card?" towards an article titled "Get physical card".  Measured on the kb-eval dev set,
the request words lift banking77 top-3 by about 1.5 points and change nothing elsewhere.

Negations ("not", "nao") are kept: "refund not showing up" and "request a refund" are
different articles.

Spellings are the output of ``kb.normalize.fold`` (lower case, no accents), so "está"
is listed as "esta" and "não" would be "nao".  A word listed in two languages is fine.
"""

from __future__ import annotations

ENGLISH: frozenset[str] = frozenset(
    """
    a an the and or but if then so than too very also just
    i me my mine myself we us our ours ourselves you your yours yourself yourselves
    he him his himself she her hers herself it its itself they them their theirs themselves
    this that these those there here
    am is are was were be been being have has had having do does did doing done
    will would shall should can could may might must
    of at by for with about against between into through during before after above below
    to from up down in out on off over under again further once
    any both each few more most other some such own same only
    s t d ll m o re ve y
    what which who whom whose why how when where
    get got gets getting want wanted wants need needs needed like please help
    hi hello hey thanks thank know tell able still just already really yet even
    something anything someone anyone thing things much many way ok okay dear sir madam one
    """.split()
)

SPANISH: frozenset[str] = frozenset(
    """
    el la los las lo un una unos unas al del
    y e o u ni pero sino que
    de a en con por para sin sobre entre hasta desde hacia tras ante bajo segun
    yo me mi mis mio mia tu te ti tus tuyo tuya usted ustedes el ella ellos ellas
    nos nosotros nosotras vos vosotros su sus suyo suya se le les
    este esta estos estas ese esa esos esas aquel aquella aquellos aquellas esto eso aquello
    es son era eran fue fueron ser sido siendo soy eres somos sea sean
    estar estoy estas esta estamos estan estaba estaban estado
    ha han he has hemos habia habian haber hay
    muy mas tambien ya como
    que cual cuales quien cuando donde porque
    quiero quisiera queria necesito necesita ayuda ayudar hola gracias favor puedo puede podria
    saber algo alguien cosa cosas mucho muchos
    """.split()
)

PORTUGUESE: frozenset[str] = frozenset(
    """
    o a os as um uma uns umas ao aos do da dos das no na nos nas
    pelo pela pelos pelas num numa dum duma
    e ou mas nem que se
    de em com por para sem sobre entre ate desde apos perante
    eu me mim meu minha meus minhas tu te ti teu tua teus tuas voce voces
    ele ela eles elas lhe lhes nos vos seu sua seus suas
    este esta estes estas esse essa esses essas aquele aquela aqueles aquelas isto isso aquilo
    e sao era eram foi foram ser sido sendo sou somos seja sejam
    estar estou esta estamos estao estava estavam estado
    ha tem temos tinha tinham ter tido
    muito mais tambem ja como
    qual quais quem quando onde porque
    quero queria gostaria preciso precisa ajuda ajudar ola obrigado obrigada favor posso pode
    poderia saber algo alguem coisa coisas muitos
    """.split()
)

STOP_WORDS: frozenset[str] = ENGLISH | SPANISH | PORTUGUESE
