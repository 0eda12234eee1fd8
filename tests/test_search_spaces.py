import json
import subprocess
import sys

import pytest

from search_spaces import Architecture, SearchSpace, SpaceError, get_space, list_spaces

PRESETS = list_spaces()


@pytest.mark.parametrize("name", PRESETS)
def test_space_json_round_trip(name, tmp_path):
    space = get_space(name)
    path = tmp_path / "space.json"
    path.write_text(space.to_json())
    assert SearchSpace.load(path) == space
    assert get_space(str(path)) == space
    assert hash(SearchSpace.from_dict(json.loads(space.to_json()))) == hash(space)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_have_three_tasks_at_three_scales_with_coarsest_fixed(name):
    space = get_space(name)
    assert space.scales == 3 and len(space.tasks) == 3 and len(space.heads) == 9
    assert set(space.fixed) == {f"{t.name}@3" for t in space.tasks}
    assert len(space.searchable) == 6
    assert space.motion_task.name == ("flow" if name == "most_net_plus" else "homography")


def test_architecture_round_trip_and_stable_id(tmp_path):
    space = get_space("most_net_pp")
    heads = ("restoration@1", "restoration@3", "segmentation@2", "segmentation@3", "homography@3")
    arch = Architecture(space, heads)
    assert Architecture(space, tuple(reversed(heads))).id == arch.id  # order does not matter
    assert Architecture(space, heads + ("homography@2",)).id != arch.id
    path = tmp_path / "architecture.json"
    path.write_text(json.dumps(arch.to_dict()))
    loaded = Architecture.load(path)
    assert loaded == arch and loaded.id == arch.id
    assert set(arch.dropped) == {"restoration@2", "segmentation@1", "homography@1", "homography@2"}


def test_tampered_architecture_id_is_refused(tmp_path):
    data = Architecture.full(get_space("most_net_plus")).to_dict()
    data["heads"].remove("flow@1")
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpaceError, match="does not match"):
        Architecture.load(path)


@pytest.mark.parametrize("heads, message", [
    (("restoration@1",), "drops fixed heads"),
    (("restoration@3", "segmentation@3", "flow@3", "flow@4"), "does not have"),
])
def test_invalid_architectures(heads, message):
    with pytest.raises(SpaceError, match=message):
        Architecture(get_space("most_net_plus"), heads)


def test_space_validation():
    space = get_space("most_net_plus").to_dict()
    space["fixed"] = ["restoration@3", "segmentation@3"]
    with pytest.raises(SpaceError, match="coarsest head of 'flow'"):
        SearchSpace.from_dict(space)
    space["fixed"] = ["restoration@3", "segmentation@3", "flow@3"]
    space["heads"].append("depth@1")
    with pytest.raises(SpaceError, match="unknown task 'depth'"):
        SearchSpace.from_dict(space)
    with pytest.raises(SpaceError, match="unknown space 'nope'"):
        get_space("nope")


def test_search_spaces_imports_no_torch():
    code = "import sys, search_spaces; search_spaces.get_space('most_net_plus'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
