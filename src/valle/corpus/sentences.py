"""The built-in corpus's sentences: written for this project (Harvard-sentence style, varied phonemes)."""

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living!",
    "Would you like a cup of warm milk?",
]

# Word lists for generated sentences: common words with a wide spread of English phonemes
# (fricatives, affricates, clusters, diphthongs), combined by a fixed seed into simple sentences.
_ADJECTIVES = ["quiet", "bright", "heavy", "young", "tired", "clever", "yellow", "frozen", "gentle", "rough",
               "shiny", "thick", "brave", "sharp", "pleasant", "crooked", "smooth", "joyful", "dusty", "warm"]
_NOUNS = ["farmer", "teacher", "kitten", "sailor", "judge", "builder", "child", "thief", "pilot", "choir",
          "dragon", "neighbour", "fisherman", "singer", "queen", "shepherd", "giraffe", "doctor", "chef", "zebra"]
_VERBS = ["carried", "watched", "pushed", "painted", "measured", "fixed", "chased", "thanked", "visited",
          "borrowed", "washed", "followed", "judged", "treasured", "shouted at", "climbed over", "forgot",
          "rescued", "sketched", "weighed"]
_OBJECTS = ["a wooden box", "the old bridge", "three silver coins", "a jar of honey", "the garden gate",
            "a broken watch", "the village church", "a pile of leather shoes", "the orange boat", "a huge shadow",
            "the thirsty horse", "a bag of cherries", "the frozen pond", "a stack of books", "the purple tent"]
_ENDINGS = ["before dawn", "after the storm", "near the harbour", "on Thursday", "without a sound",
            "in the kitchen", "beside the fountain", "during the show", "at the edge of town", "with great care"]


def generated_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct sentences, the same for the same seed (no two share all their parts)."""
    import random

    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        sentence = (f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} "
                    f"{rng.choice(_OBJECTS)} {rng.choice(_ENDINGS)}.")
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def all_sentences(n: int = 400, seed: int = 0) -> list[str]:
    """The hand-written sentences first, then generated ones up to `n`."""
    return SENTENCES[:n] + generated_sentences(max(0, n - len(SENTENCES)), seed)
