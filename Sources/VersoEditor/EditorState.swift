import VersoCore
