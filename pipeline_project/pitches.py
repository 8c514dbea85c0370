"""Pitch-class names shared by synthesis and analysis: the one spelling every chord and key label uses,
and the pitch class of any spelling a score or a tag may bring."""

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
PITCH_CLASS = {name: index for index, name in enumerate(PITCH_NAMES)} | {
    "Db": 1,
    "D#": 3,
    "Gb": 6,
    "G#": 8,
    "A#": 10,
    "Cb": 11,
    "E#": 5,
    "Fb": 4,
    "B#": 0,
}
# Double sharps and flats: a score's chord may have one as its root (F##:dim7, the leading-tone chord of G#
# minor), and its label keeps the score's spelling.
PITCH_CLASS |= {f"{letter}##": (PITCH_CLASS[letter] + 2) % 12 for letter in "CDEFGAB"}
PITCH_CLASS |= {f"{letter}bb": (PITCH_CLASS[letter] - 2) % 12 for letter in "CDEFGAB"}
