"""Generation front ends (music, lyrics, speech, vocoding) and the sampling they share."""
