"""A GGUF metadata field's value on every supported gguf: ReaderField.contents() arrived in gguf 0.16,
the lowest supported release (0.10) only has the raw parts, which this reads the same way."""

import gguf


def field_value(f):
    if hasattr(f, "contents"):
        return f.contents()
    T = gguf.GGUFValueType
    item = f.types[-1]  # an array's element type, or the scalar's own

    def one(i):
        part = f.parts[i]
        return bytes(part).decode("utf-8") if item == T.STRING else part.tolist()[0]

    if f.types[0] == T.ARRAY:
        return [one(i) for i in f.data]
    return one(f.data[0])
