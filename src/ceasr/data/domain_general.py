"""General English sentences: speech that is neither a digit string nor a command.

A model trained only on the closed domains (digits, commands) can spell nothing else, so whatever it hears
comes out as digits or commands, and a command recognizer cannot tell a near miss ("open the box") from the
real thing ("open the door"): both decode to a command. Mixed into training (``--domain
digits,commands,general``), these sentences give the model other words to hear, and the free transcript that
:mod:`ceasr.commands.recognize` compares the best phrase with then says what was said.

Sentences come from templates over everyday words (about 400), each slot drawn uniformly; they are plain
English, lowercase, with numbers only as words.
"""

from __future__ import annotations

import numpy as np

NAMES = ("anna", "ben", "carla", "david", "emma", "frank", "grace", "henry", "iris", "jack", "kate", "leo",
         "maria", "nora", "oscar", "paul", "rosa", "sam", "tina", "victor", "my sister", "my brother",
         "the teacher", "the doctor", "our neighbour", "the driver", "my friend", "the baker")
NOUNS = ("book", "cup", "chair", "table", "letter", "bottle", "bag", "key", "phone", "coat", "shirt", "shoe",
         "plate", "knife", "spoon", "apple", "orange", "bread", "cake", "cheese", "picture", "lamp", "pencil",
         "paper", "basket", "blanket", "pillow", "mirror", "clock", "bicycle", "ticket", "umbrella", "jacket",
         "bucket", "hammer", "ladder", "rope", "candle", "flower", "tree", "stone", "river", "bridge", "road",
         "train", "boat", "horse", "dog", "cat", "bird", "fish", "rabbit", "sheep", "garden", "kitchen",
         "office", "school", "market", "church", "village", "castle", "forest", "beach", "mountain", "island",
         "newspaper", "story", "song", "letterbox", "computer", "camera", "wallet", "parcel",
         "envelope", "carpet", "curtain", "sofa", "pocket", "button", "ribbon", "glove", "hat", "scarf")
PLURALS = ("books", "cups", "chairs", "letters", "bottles", "keys", "apples", "oranges", "flowers", "trees",
           "stones", "horses", "dogs", "cats", "birds", "fish", "children", "people", "students", "pictures",
           "candles", "tickets", "eggs", "potatoes", "tomatoes", "boxes", "shoes", "gloves", "boats", "clouds")
ADJECTIVES = ("big", "small", "old", "new", "red", "green", "yellow", "blue", "white", "black", "brown",
              "heavy", "light", "warm", "cold", "quiet", "noisy", "clean", "dirty", "happy", "tired", "early",
              "late", "empty", "full", "soft", "hard", "sweet", "bitter", "strange", "beautiful", "broken",
              "famous", "careful", "hungry", "bright", "dark", "wooden", "little", "friendly")
VERBS = ("find", "bring", "carry", "wash", "paint", "read", "write", "draw", "fix", "sell", "buy", "borrow",
         "keep", "hide", "throw", "catch", "hold", "fold", "pack", "cut", "cook", "bake", "clean", "check",
         "visit", "follow", "watch", "remember", "forget", "choose", "move", "push", "pull", "lift", "send")
PAST = ("found", "brought", "carried", "washed", "painted", "read", "wrote", "drew", "fixed", "sold",
        "bought", "borrowed", "kept", "hid", "threw", "caught", "held", "folded", "packed", "cut", "cooked",
        "baked", "cleaned", "checked", "visited", "followed", "watched", "remembered", "forgot", "chose")
PLACES = ("in the garden", "on the table", "under the bed", "near the river", "at the station",
          "behind the house", "in the kitchen", "at school", "in the car", "on the shelf", "by the window",
          "across the street", "in the forest", "at the market", "on the bridge", "inside the box",
          "next to the church", "over the hill", "in the office", "at the beach")
TIMES = ("yesterday", "today", "tomorrow", "last night", "this morning", "every day", "on monday",
         "on friday", "at noon", "in the evening", "next week", "last summer", "after lunch", "before dinner",
         "on sunday", "in winter", "at midnight", "later", "soon", "again")
FEELINGS = ("think", "hope", "know", "believe", "guess", "heard", "said", "feel")
QUESTIONS = ("where is", "who has", "why is", "when did you see", "how old is", "what happened to",
             "who painted", "where did you put", "how much is", "which one is")
COUNTS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twenty", "a few", "many",
          "some", "no")

# A template is a tuple of slots: a tuple of alternatives or one of the word lists above.
TEMPLATES = (
    (NAMES, PAST, ("the", "a", "my", "her", "his", "our"), ADJECTIVES, NOUNS, PLACES),
    (("the",), NOUNS, ("is", "was", "looks", "seems", "feels"), ADJECTIVES, TIMES),
    (("can you", "could you", "please", "will you", "let us", "we should", "do not"), VERBS, ("the", "a", "my"),
     NOUNS, PLACES),
    (QUESTIONS, ("the", "my", "your", "that"), ADJECTIVES, NOUNS),
    (("i", "we", "they", "you"), FEELINGS, NAMES, PAST, ("the",), NOUNS, TIMES),
    (("there are", "there were", "we saw", "she counted", "he bought", "they found"), COUNTS, ADJECTIVES,
     PLURALS, PLACES),
    (NAMES, ("likes", "hates", "wants", "needs", "collects", "draws"), ADJECTIVES, PLURALS),
    (("it was a", "what a", "this is a", "that was a"), ADJECTIVES, ("day", "night", "week", "trip", "song",
                                                                       "story", "game", "morning", "idea")),
    (("how many",), PLURALS, ("are", "were", "can you see", "did you find"), PLACES),
    (NAMES, ("will", "might", "must", "did not", "wanted to", "forgot to", "tried to"), VERBS, ("the",),
     NOUNS, TIMES),
    (("good morning", "good night", "thank you", "excuse me", "never mind", "see you later", "not now",
      "of course", "how are you", "nice to meet you", "i am sorry", "maybe later", "that sounds good",
      "i do not know", "say that again", "hello there", "well done", "wait a moment"),),
)


def general(rng: np.random.Generator) -> str:
    """One sentence: a template chosen uniformly, then each slot's alternative uniformly. No template can
    produce a command of the ``commands`` domain (each has a word no command has)."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return " ".join(slot[int(rng.integers(len(slot)))] for slot in template)
