-- Answers that the library is loaded, for users who may not list functions.
return 'loaded'
