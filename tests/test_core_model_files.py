"""Model files across kinds: a loader given another of fwdlearn's files says what it is and what reads it; a file of
a newer fwdlearn, a damaged, cut or empty file, and one saved on the meta device are refused naming the problem."""

import pickle

import pytest
import torch

from fwdlearn.errors import InputError


def _graph_model():
    from fwdlearn.graphs import ForwardGNN

    return ForwardGNN(5, 3, hidden=8, layers=2, method="bp")


def test_a_graph_model_file_given_to_the_language_model_loader_is_named_as_one(tmp_path, one_torch_thread):
    """A ForwardGNN file given to influence seq was "unknown language model kind 'forward-gnn' ... written by a kind
    (registered in other code)"; a language model given to ForwardGNN.load, and a model file given to --resume,
    named nothing of what the file was."""
    from fwdlearn.fit import read_checkpoint
    from fwdlearn.graphs import ForwardGNN, ForwardLinkPredictor
    from fwdlearn.sequences import RecurrentLM, load_language_model

    gnn = _graph_model().save(tmp_path / "gnn.pt")
    with pytest.raises(InputError, match=r"gnn\.pt is neither a saved language model nor a fwdlearn seq train "
                                         r"checkpoint: it is a ForwardGNN graph model file, read by "
                                         r"fwdlearn\.graphs\.ForwardGNN\.load"):
        load_language_model(gnn)
    with pytest.raises(InputError, match=r"gnn\.pt is not a ForwardLinkPredictor model file \(.*\): it is a "
                                         r"ForwardGNN graph model file"):
        ForwardLinkPredictor.load(gnn)
    with pytest.raises(InputError, match=r"gnn\.pt is not a training checkpoint \(a file saved by a fitting run\): it "
                                         r"is a ForwardGNN graph model file, read by .*; pass the --checkpoint"):
        read_checkpoint(gnn)
    lm = RecurrentLM(4, hidden=4, layers=1).save(tmp_path / "lm.pt")
    with pytest.raises(InputError, match=r"lm\.pt is not a ForwardGNN model file \(ForwardGNN\.save writes one.*\): "
                                         r"it is a recurrent language model file, read by "
                                         r"fwdlearn\.sequences\.load_language_model and fwdlearn influence seq"):
        ForwardGNN.load(lm)
    torch.save(RecurrentLM(4, hidden=4, layers=1).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(InputError, match=r"bare\.pt is neither .*: it is a bare state_dict .*model\.load_state_dict"):
        load_language_model(tmp_path / "bare.pt")


def test_the_table_of_file_kinds_names_every_kind_fwdlearn_writes():
    from fwdlearn.graphs import ForwardGNN, ForwardLinkPredictor
    from fwdlearn.model_files import FILE_KINDS
    from fwdlearn.sequences.registries import LM_KINDS

    assert set(FILE_KINDS) == {ForwardGNN.FILE_KIND, ForwardLinkPredictor.FILE_KIND, *LM_KINDS}


@pytest.mark.parametrize("kind", ["recurrent", "transformer", "conv"])
def test_a_language_model_file_with_a_setting_this_fwdlearn_does_not_know_is_refused(tmp_path, kind, one_torch_thread):
    """A config entry of a newer fwdlearn (a setting this version does not take) was dropped: the model came back
    built without it, silently (ForwardGNN.load refused such a file)."""
    from fwdlearn.sequences import CausalConvLM, RecurrentLM, TransformerLM, load_language_model

    model = {"recurrent": lambda: RecurrentLM(6, hidden=4, layers=1),
             "transformer": lambda: TransformerLM(6, hidden=4, layers=1, heads=1, context=8),
             "conv": lambda: CausalConvLM(6, hidden=4, layers=1)}[kind]()
    bundle = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    torch.save({**bundle, "config": {**bundle["config"], "rope": True}}, tmp_path / "newer.pt")
    with pytest.raises(InputError, match=rf"newer\.pt: its config holds rope=True, which {type(model).__name__} does "
                                         r"not take \(its settings: .*\); it was written by .* a fwdlearn version"):
        load_language_model(tmp_path / "newer.pt")
    loaded, _ = load_language_model(tmp_path / "m.pt")  # (its own entries, kind among them, still build it)
    assert loaded.config_dict() == model.config_dict()


def test_a_recurrent_model_file_of_an_older_fwdlearn_with_its_retired_speed_option_still_loads(tmp_path):
    from fwdlearn.sequences import RecurrentLM, load_language_model

    bundle = torch.load(RecurrentLM(6, hidden=4, layers=1).save(tmp_path / "m.pt"), weights_only=True)
    torch.save({**bundle, "config": {**bundle["config"], "reuse": True}}, tmp_path / "older.pt")
    assert load_language_model(tmp_path / "older.pt")[0].config_dict() == bundle["config"]


def test_a_damaged_or_cut_model_file_is_refused_naming_the_damage(tmp_path):
    """A byte changed among the weights loaded silently as another weight (torch reads no CRC); a file cut short was
    "OSError: [Errno 22] Invalid argument", an empty one "EOFError: "."""
    from fwdlearn.graphs import ForwardGNN

    model = _graph_model()
    data = bytearray(model.save(tmp_path / "m.pt").read_bytes())
    weight = max(model.state_dict().values(), key=lambda t: t.numel())
    at = bytes(data).find(weight.detach().numpy().tobytes()[:16])
    assert at > 0
    data[at + 1] ^= 0xFF
    (tmp_path / "damaged.pt").write_bytes(data)
    with pytest.raises(InputError, match=r"cannot read .*damaged\.pt as a ForwardGNN model \(UnpicklingError: its "
                                         r"record '.*' does not match the checksum saved with it: the file was "
                                         r"damaged"):
        ForwardGNN.load(tmp_path / "damaged.pt")
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.pt .*it is cut short: a torch file \(a zip archive\) without the "
                                         r"directory that ends it"):
        ForwardGNN.load(tmp_path / "cut.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.pt .*the file is empty \(0 bytes\)"):
        ForwardGNN.load(tmp_path / "empty.pt")
    torch.serialization.set_crc32_options(False)  # (a file written without checksums: nothing to check)
    try:
        model.save(tmp_path / "unchecked.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    loaded = ForwardGNN.load(tmp_path / "unchecked.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def _name_largest_record_again(path, times):
    """Rewrite the torch file at ``path`` so that its directory names its largest record ``times`` more times, each
    entry at the same bytes (overlapping records: one record read over and over)."""
    import struct

    data = path.read_bytes()
    end = data.rindex(b"PK\x05\x06")
    size, offset = struct.unpack("<II", data[end + 12: end + 20])
    entries, at = [], offset
    while at < offset + size:
        lengths = struct.unpack("<HHH", data[at + 28: at + 34])
        entries.append(data[at: at + 46 + sum(lengths)])
        at += 46 + sum(lengths)
    largest = max(entries, key=lambda entry: struct.unpack("<I", entry[20:24])[0])
    directory = b"".join(entries) + largest * times
    count = len(entries) + times
    path.write_bytes(data[:offset] + directory + data[end: end + 8]
                     + struct.pack("<HHII", count, count, len(directory), offset) + data[end + 20:])


def test_a_torch_file_whose_records_overlap_or_are_compressed_is_not_read_over_and_over(tmp_path):
    """The check of every record's CRC read each record its directory named: a crafted file of 1 MB that named its
    record of 1 GB (compressed) eleven times took 23 s (torch.load 0.02 s), growing with each name to days. Records
    claiming more bytes than the file holds are refused before any is read; a compressed one is inflated no further
    than its stated size, and refused where that size is more than deflate can give."""
    import struct
    import zipfile

    from fwdlearn.fit import DEFLATE_MOST, load_torch

    path = tmp_path / "overlap.pt"
    torch.save({"w": torch.arange(4096.0)}, path)
    _name_largest_record_again(path, 50)
    with pytest.raises(pickle.UnpicklingError, match=r"its directory claims [\d,]+ bytes of records in a file of "
                                                     r"[\d,]+ bytes \(records named more than once, overlapping"):
        load_torch(path)
    bomb = tmp_path / "bomb.pt"
    torch.save({"w": torch.arange(3.0)}, bomb)
    with zipfile.ZipFile(bomb, "a") as archive:
        extra = zipfile.ZipInfo(archive.namelist()[0].split("/")[0] + "/extra")
        extra.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(extra, bytes(1 << 22))  # (4 MB of zeros in 4 kB: checked, intact)
    assert torch.equal(load_torch(bomb)["w"], torch.arange(3.0))
    data = bytearray(bomb.read_bytes())  # (its directory's entry of it made to claim 1,000 times more)
    entry = data.rindex(b"PK\x01\x02", 0, data.rindex(b"PK\x05\x06"))
    size = struct.unpack("<I", data[entry + 20: entry + 24])[0]
    data[entry + 24: entry + 28] = struct.pack("<I", size * DEFLATE_MOST + 1)
    bomb.write_bytes(data)
    with pytest.raises(pickle.UnpicklingError, match=rf"its record '.*/extra' claims {size * DEFLATE_MOST + 1:,} bytes "
                                                     rf"deflated into {size:,}, more than deflate can give"):
        load_torch(bomb)


def test_a_damaged_compressed_record_is_refused_and_an_intact_one_loads(tmp_path):
    """A torch file rewritten with its records deflated (torch.save writes none; torch's reader inflates them) went
    unchecked: a byte changed among its weights loaded silently as other weights. Deflated records are inflated and
    checked; one compressed with a method torch cannot read is named, where torch said "unsupported method. This is
    an internal miniz error"."""
    import zipfile

    from fwdlearn.fit import load_torch

    torch.save({"w": torch.arange(100.0)}, tmp_path / "stored.pt")

    def rewritten(name, method):
        with zipfile.ZipFile(tmp_path / "stored.pt") as source, zipfile.ZipFile(tmp_path / name, "w") as target:
            for info in source.infolist():
                target.writestr(info.filename, source.read(info), compress_type=method)
        return tmp_path / name

    good = rewritten("deflated.pt", zipfile.ZIP_DEFLATED)
    assert torch.equal(load_torch(good)["w"], torch.arange(100.0))
    with zipfile.ZipFile(good) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    data = bytearray(good.read_bytes())
    start = info.header_offset + 30 + int.from_bytes(data[info.header_offset + 26: info.header_offset + 28], "little") \
        + int.from_bytes(data[info.header_offset + 28: info.header_offset + 30], "little")
    for at, why in ((start + info.compress_size // 2, "does not match the checksum saved with it"),
                    (start + 1, "(does not match the checksum|cannot be inflated to the 400 bytes)")):
        damaged = bytearray(data)
        damaged[at] ^= 0x01
        (tmp_path / "damaged.pt").write_bytes(damaged)
        assert not torch.equal(torch.load(tmp_path / "damaged.pt", weights_only=True)["w"], torch.arange(100.0))
        with pytest.raises(pickle.UnpicklingError, match=rf"its record '.*/data/0' {why}.*damaged after it was "
                                                         "written"):
            load_torch(tmp_path / "damaged.pt")
    with pytest.raises(pickle.UnpicklingError, match=r"its record '.*' is compressed with bzip2, which torch's reader "
                                                     r"cannot read"):
        load_torch(rewritten("bzip2.pt", zipfile.ZIP_BZIP2))


def test_a_model_on_the_meta_device_is_not_saved_and_a_file_of_one_names_it(tmp_path):
    """A model loaded with map_location='meta' was saved as a file of no weights, whose load then said "the weights
    do not fit the model its config describes ... it was edited"."""
    from fwdlearn.sequences import RecurrentLM, load_language_model

    model = RecurrentLM(6, hidden=4, layers=1)
    model.save(tmp_path / "m.pt")
    on_meta, _ = load_language_model(tmp_path / "m.pt", map_location="meta")
    with pytest.raises(ValueError, match=r"the model's .* is on the meta device \(shape \[.*\]\): a shape without "
                                         r"values, and the file would hold no weights; save a model whose weights"):
        on_meta.save(tmp_path / "meta.pt")
    assert not (tmp_path / "meta.pt").exists()
    bundle = torch.load(tmp_path / "m.pt", weights_only=True)
    torch.save({**bundle, "model": {k: v.to("meta") for k, v in bundle["model"].items()}}, tmp_path / "meta.pt")
    with pytest.raises(InputError, match=r"meta\.pt holds no weights: its .* is on the meta device \(shape \[.*\]\): a "
                                         r"shape without values, and it was saved from a model on the meta device; "
                                         r"save the model again from the CPU or a GPU"):
        load_language_model(tmp_path / "meta.pt")


def test_a_model_file_path_that_cannot_be_written_is_refused_naming_why(tmp_path):
    """A path under a file was "[Errno 17] File exists: '<the file>'", an empty one " is a folder"."""
    from fwdlearn.errors import UsageError
    from fwdlearn.sequences import RecurrentLM

    model = RecurrentLM(6, hidden=4, layers=1)
    model.save(tmp_path / "m.pt")
    with pytest.raises(UsageError, match=r"cannot write .*m\.pt/x\.pt: .*m\.pt is a file, not a folder"):
        model.save(tmp_path / "m.pt" / "x.pt")
    with pytest.raises(ValueError, match=r"the model file's path is empty"):
        model.save("")


def test_a_loaded_model_comes_back_in_eval_mode_as_from_pretrained_gives_it(tmp_path):
    """A model read back kept ``nn.Module``'s default train mode: a loaded transformer with dropout, called on the same
    input twice, gave two outputs (Hugging Face's ``from_pretrained`` gives a model in ``eval()``)."""
    from fwdlearn.graphs import ForwardGNN
    from fwdlearn.sequences import TransformerLM, load_language_model

    torch.manual_seed(0)
    lm, _ = load_language_model(TransformerLM(7, hidden=8, layers=1, heads=2, dropout=0.5).save(tmp_path / "t.pt"))
    gnn = ForwardGNN.load(_graph_model().save(tmp_path / "g.pt"))
    for model in (lm, gnn):
        assert not any(module.training for module in model.modules())
    x = torch.randint(0, 7, (2, 5))
    assert torch.equal(lm(x)[0], lm(x)[0])


def test_a_diverged_model_is_not_saved(tmp_path, one_torch_thread):
    """A model whose weights went NaN (a loop of one's own at too high a learning rate) was written, and loaded back
    as a model whose every output, and so its loss and bpc, was NaN; Trainer checkpoints never held such a state."""
    from fwdlearn.sequences import RecurrentLM

    lm = RecurrentLM(4, cell="gru", hidden=8, layers=1)
    with torch.no_grad():
        lm.blocks[0].layer.rnn.weight_hh_l0[0, 0] = float("nan")
    gnn = _graph_model()
    with torch.no_grad():
        gnn.blocks[1].conv.lin.weight.fill_(float("inf"))
    for model, name in ((lm, r"blocks\.0\.layer\.rnn\.weight_hh_l0"), (gnn, r"blocks\.1\.conv\.lin\.weight")):
        with pytest.raises(ValueError, match=rf"the model's {name} holds NaN or inf values \(training diverged\): the "
                                             r"file would hold a model that gives NaN"):
            model.save(tmp_path / "m.pt")
        assert not (tmp_path / "m.pt").exists()
    RecurrentLM(4, cell="gru", hidden=8, layers=1).save(tmp_path / "m.pt")  # a finite one is written


def test_a_model_whose_buffer_holds_an_infinity_on_purpose_is_saved(tmp_path):
    """The refusal of a diverged model read every buffer too: a model of one's own (ModelFile) with a causal attention
    mask of -inf registered as a buffer was refused as 'training diverged'. A NaN buffer, or an inf weight, still is."""
    from fwdlearn.model_files import ModelFile

    class Masked(ModelFile, torch.nn.Module):
        FILE_KIND = "masked-test"

        def __init__(self, d: int = 4, length: int = 5) -> None:
            super().__init__()
            self.d, self.length = d, length
            self.q = torch.nn.Linear(d, d)
            self.register_buffer("mask", torch.full((length, length), float("-inf")).triu(1))

        def config_dict(self):
            return {"d": self.d, "length": self.length}

        def forward(self, x):
            return (self.q(x) @ x.transpose(-1, -2) + self.mask).softmax(-1) @ x

    torch.manual_seed(0)
    model = Masked()
    x = torch.randn(2, 5, 4)
    assert torch.equal(Masked.load(model.save(tmp_path / "m.pt"))(x), model(x))
    with torch.no_grad():
        model.mask[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"the model's mask holds NaN or inf values \(training diverged\)"):
        model.save(tmp_path / "nan.pt")
    with torch.no_grad():
        model.mask[0, 0] = 0.0
        model.q.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"the model's q\.weight holds NaN or inf values \(training diverged\)"):
        model.save(tmp_path / "inf.pt")
