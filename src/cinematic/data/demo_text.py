"""Text for the demo data set: scene descriptions, spoken sentences, and the lyric phrase lists.

All of it was written for this project (no copied lyrics). Lyric lines are built from templates:
`<subject> <verb phrase>`, `<and> <subject> <verb phrase>`, a first-person line, or a chorus hook, with
the phrases chosen from the song's emotion list. Subjects are singular noun phrases with their article
and verb phrases are third person singular, so every combination is grammatical in all four languages
(German subjects are nominative, and "und" keeps the verb in second position).
"""

from __future__ import annotations

# Short scene descriptions per emotion; a few per emotion, so a scene label repeats across files.
SCENES: dict[str, tuple[str, ...]] = {
    "sad": (
        "rain on the window of an empty house after a funeral",
        "two old friends say goodbye on a train platform",
        "a soldier reads a letter from home by candlelight",
    ),
    "peaceful": (
        "dawn over a quiet lake with mist on the water",
        "a child falls asleep in a sunlit meadow",
        "snow falling softly on a mountain village",
    ),
    "triumphant": (
        "the hero returns home to a cheering crowd",
        "the team lifts the trophy as the stadium roars",
        "the ship sails into harbour after a long voyage",
    ),
    "epic": (
        "armies gather on a vast plain at sunrise",
        "a starship races past a burning planet",
        "a dragon rises above the mountain fortress",
    ),
    "tense": (
        "footsteps in a dark corridor, something is following",
        "the clock ticks while the bomb is defused",
        "a detective searches the house while the killer hides",
    ),
    "mysterious": (
        "an ancient door opens onto a glowing cave",
        "fog rolls through a forest at midnight",
        "a stranger leaves a coded map on the table",
    ),
}

# Sentences the demo speakers read: short (about 1-3 s at espeak-ng's speaking rates), one pool per
# language; each speaker reads 12 of them, chosen by the seed.
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "The rain stopped before midnight.",
        "Please close the window, it is cold.",
        "She found the old map in the attic.",
        "We will meet again at the station.",
        "The music grew louder in the hall.",
        "Turn left after the bridge.",
        "My brother plays the violin.",
        "The train leaves in five minutes.",
        "Bring a coat, the wind is strong.",
        "They walked along the quiet beach.",
        "The candle burned all through the night.",
        "Can you hear the bells ringing?",
        "The garden is full of roses.",
        "He opened the door very slowly.",
        "Our ship reached the harbour at dawn.",
        "Listen to the sound of the sea.",
    ),
    "es": (
        "La lluvia paró antes de medianoche.",
        "Cierra la ventana, hace frío.",
        "Ella encontró el mapa en el desván.",
        "Nos vemos otra vez en la estación.",
        "La música sonaba cada vez más fuerte.",
        "Gira a la izquierda después del puente.",
        "Mi hermano toca el violín.",
        "El tren sale en cinco minutos.",
        "Lleva un abrigo, hace mucho viento.",
        "Caminaron por la playa tranquila.",
        "La vela ardió toda la noche.",
        "¿Oyes las campanas sonar?",
        "El jardín está lleno de rosas.",
        "Abrió la puerta muy despacio.",
        "El barco llegó al puerto al amanecer.",
        "Escucha el sonido del mar.",
    ),
    "fr": (
        "La pluie a cessé avant minuit.",
        "Ferme la fenêtre, il fait froid.",
        "Elle a trouvé la vieille carte au grenier.",
        "Nous nous reverrons à la gare.",
        "La musique devenait plus forte.",
        "Tourne à gauche après le pont.",
        "Mon frère joue du violon.",
        "Le train part dans cinq minutes.",
        "Prends un manteau, le vent est fort.",
        "Ils marchaient sur la plage tranquille.",
        "La bougie a brûlé toute la nuit.",
        "Entends-tu sonner les cloches?",
        "Le jardin est plein de roses.",
        "Il a ouvert la porte très lentement.",
        "Notre bateau est arrivé à l'aube.",
        "Écoute le bruit de la mer.",
    ),
    "de": (
        "Der Regen hörte vor Mitternacht auf.",
        "Bitte schließ das Fenster, es ist kalt.",
        "Sie fand die alte Karte auf dem Dachboden.",
        "Wir treffen uns wieder am Bahnhof.",
        "Die Musik wurde immer lauter.",
        "Nach der Brücke links abbiegen.",
        "Mein Bruder spielt Geige.",
        "Der Zug fährt in fünf Minuten ab.",
        "Nimm einen Mantel mit, der Wind ist stark.",
        "Sie gingen am stillen Strand entlang.",
        "Die Kerze brannte die ganze Nacht.",
        "Hörst du die Glocken läuten?",
        "Der Garten ist voller Rosen.",
        "Er öffnete die Tür ganz langsam.",
        "Unser Schiff erreichte den Hafen am Morgen.",
        "Hör dem Rauschen des Meeres zu.",
    ),
}

CONJUNCTION = {"en": "and", "es": "y", "fr": "et", "de": "und"}

# LYRICS[language][emotion] = (subjects, verb phrases, first-person lines, chorus hooks)
Phrases = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]
LYRICS: dict[str, dict[str, Phrases]] = {
    "en": {
        "sad": (
            ("the rain", "an empty room", "the last letter", "my shadow", "the grey sky"),
            (
                "falls without a sound",
                "remembers your name",
                "waits by the door",
                "fades into the night",
                "keeps the cold inside",
            ),
            (
                "I hold the words I never said",
                "I walk alone through yesterday",
                "I count the hours since you left",
                "I keep your photo by the bed",
            ),
            ("Don't let the candle die tonight", "All the colours turned to grey"),
        ),
        "triumphant": (
            ("the morning sun", "our banner", "the roaring crowd", "the mountain", "every heart"),
            (
                "rises over the walls",
                "calls us to the light",
                "shakes the ground below",
                "opens every gate",
                "burns like a golden fire",
            ),
            (
                "I stand where the giants fell",
                "we never broke, we never bent",
                "I carry the fire in my hands",
                "we sing until the sky replies",
            ),
            ("Raise your voice, the day is ours", "We are the storm that breaks the night"),
        ),
        "tense": (
            ("a shadow", "the clock", "the silent street", "a broken mirror", "the final warning"),
            (
                "moves behind the glass",
                "ticks inside my head",
                "holds its breath",
                "waits around the corner",
                "whispers something wrong",
            ),
            (
                "I hear the footsteps getting close",
                "I run but the hallway never ends",
                "I hide and count to ten",
                "I feel the wires pulling tight",
            ),
            ("Don't turn around, don't make a sound", "Something is coming through the dark"),
        ),
        "peaceful": (
            ("the river", "a gentle breeze", "the evening light", "the sleeping valley", "a quiet garden"),
            (
                "sings a slow song",
                "drifts across the fields",
                "rests upon the hills",
                "breathes under the stars",
                "glows in the morning mist",
            ),
            (
                "I lie down in the summer grass",
                "I let the hours slip away",
                "I listen to the falling leaves",
                "we watch the clouds go by",
            ),
            ("Stay here, the world can wait", "Soft and slow, let the water flow"),
        ),
    },
    "es": {
        "sad": (
            ("la lluvia", "un cuarto vacío", "la última carta", "mi sombra", "el cielo gris"),
            (
                "cae sin hacer ruido",
                "recuerda tu nombre",
                "espera junto a la puerta",
                "se pierde en la noche",
                "guarda el frío dentro",
            ),
            (
                "guardo las palabras que nunca dije",
                "camino solo por el ayer",
                "cuento las horas desde que te fuiste",
                "tengo tu foto junto a la cama",
            ),
            ("No dejes que la vela muera", "Todos los colores se volvieron grises"),
        ),
        "triumphant": (
            ("el sol de la mañana", "nuestra bandera", "la multitud", "la montaña", "cada corazón"),
            (
                "se alza sobre los muros",
                "nos llama hacia la luz",
                "hace temblar la tierra",
                "abre cada puerta",
                "arde como un fuego de oro",
            ),
            (
                "estoy de pie donde cayeron los gigantes",
                "nunca nos rompimos",
                "llevo el fuego en mis manos",
                "cantamos hasta que responda el cielo",
            ),
            ("Alza la voz, el día es nuestro", "Somos la tormenta que rompe la noche"),
        ),
        "tense": (
            ("una sombra", "el reloj", "la calle callada", "un espejo roto", "el último aviso"),
            (
                "se mueve tras el cristal",
                "late dentro de mi cabeza",
                "contiene el aliento",
                "espera en la esquina",
                "susurra algo extraño",
            ),
            (
                "oigo los pasos cada vez más cerca",
                "corro pero el pasillo no termina",
                "me escondo y cuento hasta diez",
                "siento los cables cada vez más tensos",
            ),
            ("No te des la vuelta, no hagas ruido", "Algo se acerca en la oscuridad"),
        ),
        "peaceful": (
            ("el río", "una brisa suave", "la luz de la tarde", "el valle dormido", "un jardín tranquilo"),
            (
                "canta una canción lenta",
                "flota sobre los campos",
                "descansa en las colinas",
                "respira bajo las estrellas",
                "brilla en la niebla",
            ),
            (
                "me tumbo en la hierba de verano",
                "dejo que las horas pasen",
                "escucho las hojas caer",
                "miramos las nubes pasar",
            ),
            ("Quédate aquí, el mundo puede esperar", "Despacio y suave, deja que el agua corra"),
        ),
    },
    "fr": {
        "sad": (
            ("la pluie", "une chambre vide", "la dernière lettre", "mon ombre", "le ciel gris"),
            (
                "tombe sans un bruit",
                "se souvient de ton nom",
                "attend près de la porte",
                "s'efface dans la nuit",
                "garde le froid dedans",
            ),
            (
                "je garde les mots jamais dits",
                "je marche seul dans le passé",
                "je compte les heures depuis ton départ",
                "je garde ta photo près du lit",
            ),
            ("Ne laisse pas mourir la bougie", "Toutes les couleurs sont devenues grises"),
        ),
        "triumphant": (
            ("le soleil du matin", "notre drapeau", "la foule", "la montagne", "chaque cœur"),
            (
                "se lève sur les murs",
                "nous appelle vers la lumière",
                "fait trembler la terre",
                "ouvre chaque porte",
                "brûle comme un feu doré",
            ),
            (
                "je suis debout où tombaient les géants",
                "nous n'avons jamais plié",
                "je porte le feu dans mes mains",
                "nous chantons jusqu'à ce que le ciel réponde",
            ),
            ("Lève ta voix, le jour est à nous", "Nous sommes l'orage qui brise la nuit"),
        ),
        "tense": (
            ("une ombre", "l'horloge", "la rue silencieuse", "un miroir brisé", "le dernier avertissement"),
            (
                "bouge derrière la vitre",
                "bat dans ma tête",
                "retient son souffle",
                "attend au coin de la rue",
                "murmure quelque chose d'étrange",
            ),
            (
                "j'entends les pas qui s'approchent",
                "je cours mais le couloir ne finit pas",
                "je me cache et je compte jusqu'à dix",
                "je sens les fils se tendre",
            ),
            ("Ne te retourne pas, pas un bruit", "Quelque chose arrive dans le noir"),
        ),
        "peaceful": (
            (
                "la rivière",
                "une brise légère",
                "la lumière du soir",
                "la vallée endormie",
                "un jardin tranquille",
            ),
            (
                "chante une chanson lente",
                "glisse sur les champs",
                "se repose sur les collines",
                "respire sous les étoiles",
                "brille dans la brume",
            ),
            (
                "je m'allonge dans l'herbe d'été",
                "je laisse les heures passer",
                "j'écoute tomber les feuilles",
                "nous regardons passer les nuages",
            ),
            ("Reste ici, le monde peut attendre", "Doucement, laisse couler l'eau"),
        ),
    },
    "de": {
        "sad": (
            ("der Regen", "ein leeres Zimmer", "der letzte Brief", "mein Schatten", "der graue Himmel"),
            (
                "fällt ohne einen Laut",
                "erinnert sich an deinen Namen",
                "wartet an der Tür",
                "verschwindet in der Nacht",
                "hält die Kälte fest",
            ),
            (
                "ich halte die Worte, die ich nie sagte",
                "ich gehe allein durch das Gestern",
                "ich zähle die Stunden, seit du gingst",
                "dein Foto liegt neben meinem Bett",
            ),
            ("Lass die Kerze heute nicht sterben", "Alle Farben wurden grau"),
        ),
        "triumphant": (
            ("die Morgensonne", "unsere Fahne", "die Menge", "der Berg", "jedes Herz"),
            (
                "steigt über die Mauern",
                "ruft uns ins Licht",
                "lässt die Erde beben",
                "öffnet jedes Tor",
                "brennt wie goldenes Feuer",
            ),
            (
                "ich stehe, wo die Riesen fielen",
                "wir sind nie zerbrochen",
                "ich trage das Feuer in meinen Händen",
                "wir singen, bis der Himmel antwortet",
            ),
            ("Erhebt die Stimme, der Tag gehört uns", "Wir sind der Sturm, der die Nacht zerbricht"),
        ),
        "tense": (
            (
                "ein Schatten",
                "die Uhr",
                "die stille Straße",
                "ein zerbrochener Spiegel",
                "die letzte Warnung",
            ),
            (
                "bewegt sich hinter dem Glas",
                "tickt in meinem Kopf",
                "hält den Atem an",
                "wartet an der Ecke",
                "flüstert etwas Falsches",
            ),
            (
                "ich höre die Schritte näher kommen",
                "ich renne, doch der Flur endet nie",
                "ich verstecke mich und zähle bis zehn",
                "ich spüre die Drähte sich spannen",
            ),
            ("Dreh dich nicht um, kein Laut", "Etwas kommt durch die Dunkelheit"),
        ),
        "peaceful": (
            ("der Fluss", "eine sanfte Brise", "das Abendlicht", "das schlafende Tal", "ein stiller Garten"),
            (
                "singt ein langsames Lied",
                "treibt über die Felder",
                "ruht auf den Hügeln",
                "atmet unter den Sternen",
                "leuchtet im Morgennebel",
            ),
            (
                "ich liege im Sommergras",
                "ich lasse die Stunden ziehen",
                "ich höre die Blätter fallen",
                "wir sehen den Wolken zu",
            ),
            ("Bleib hier, die Welt kann warten", "Sanft und still, das Wasser fließt"),
        ),
    },
}
